//! htpasswd user files, as nginx's `auth_basic_user_file` reads them, and password checks.
//! Pure: parsed once per Snapshot (from the `auth-secret` Secret); checked per request.
//!
//! Hash formats are nginx's (`ngx_crypt`): `$apr1$` (APR1-MD5), `{PLAIN}`, `{SHA}`,
//! `{SSHA}`, and what nginx passes to the system `crypt(3)` and musl (the ingress-nginx
//! image) supports and we implement: MD5-crypt `$1$` and bcrypt `$2a$`/`$2b$`/`$2x$`/`$2y$`.
//! Other `crypt(3)` schemes (DES, `$5$`, `$6$`) are reported and their users get 500, as
//! nginx answers when `crypt` fails.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq as _;

/// A parsed user file: users in file order (nginx uses the first line naming a user).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Htpasswd {
    entries: Vec<(String, PasswordHash)>,
}

/// One user's stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// bcrypt (`$2y$10$...`), the whole string.
    Bcrypt(String),
    /// MD5-crypt: `$1$` or `$apr1$` (`magic`), its salt and 22-character digest.
    Md5Crypt {
        /// `$1$` or `$apr1$`.
        magic: &'static str,
        /// Up to 8 characters.
        salt: String,
        /// The digest in crypt's base-64 alphabet.
        digest: String,
    },
    /// `{SHA}` + base64(SHA-1(password)).
    Sha1([u8; 20]),
    /// `{SSHA}` + base64(SHA-1(password + salt) + salt).
    Ssha {
        /// SHA-1 of password and salt.
        digest: [u8; 20],
        /// The salt.
        salt: Vec<u8>,
    },
    /// `{PLAIN}` + the password.
    Plain(String),
    /// A scheme we cannot check; the user gets 500, as nginx answers when `crypt` fails.
    Unusable,
}

/// Hashes never appear in logs.
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bcrypt(_) => "Bcrypt",
            Self::Md5Crypt { .. } => "Md5Crypt",
            Self::Sha1(_) => "Sha1",
            Self::Ssha { .. } => "Ssha",
            Self::Plain(_) => "Plain",
            Self::Unusable => "Unusable",
        })
    }
}

/// Why an entry cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Nothing after the `:`.
    #[error("user {0:?} has an empty password hash")]
    Empty(String),
    /// A scheme nginx may know but we do not check.
    #[error(
        "user {user:?}: {scheme} hashes are not supported (use bcrypt: htpasswd -B, or APR1: htpasswd -m)"
    )]
    Unsupported {
        /// The user.
        user: String,
        /// What the hash looks like.
        scheme: &'static str,
    },
    /// A known scheme, badly formed.
    #[error("user {user:?}: malformed {scheme} hash")]
    Malformed {
        /// The user.
        user: String,
        /// The scheme.
        scheme: &'static str,
    },
}

/// What checking a password gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The user exists and the password is right.
    Valid,
    /// No such user, or a wrong password (401).
    Invalid,
    /// The user's hash cannot be checked (500, as nginx).
    Unusable,
}

impl Htpasswd {
    /// Parses a user file as nginx does: `user:hash[:comment]` per line, `#` lines and
    /// lines without `:` skipped, CRLF accepted. Unusable entries are kept (their users get
    /// 500) and reported with their 1-based line number.
    pub fn parse(text: &str) -> (Self, Vec<(usize, EntryError)>) {
        let mut out = Self::default();
        let mut errors = Vec::new();
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('#') {
                continue;
            }
            let Some((user, rest)) = line.split_once(':') else {
                continue;
            };
            let hash = rest.split(':').next().unwrap_or("");
            out.push(user, hash, |e| errors.push((i + 1, e)));
        }
        (out, errors)
    }

    /// Builds a user file from `(user, hash)` pairs (ingress-nginx's `auth-map`, which
    /// writes them as `user:hash` lines: a final newline is dropped and, as in a file, the
    /// hash ends at a `:`), reporting unusable entries with the user.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> (Self, Vec<EntryError>) {
        let mut out = Self::default();
        let mut errors = Vec::new();
        for (user, hash) in pairs {
            let hash = hash.strip_suffix('\n').unwrap_or(hash);
            let hash = hash.strip_suffix('\r').unwrap_or(hash);
            let hash = hash.split(':').next().unwrap_or("");
            out.push(user, hash, |e| errors.push(e));
        }
        (out, errors)
    }

    fn push(&mut self, user: &str, hash: &str, mut report: impl FnMut(EntryError)) {
        let parsed = PasswordHash::parse(user, hash).unwrap_or_else(|e| {
            report(e);
            PasswordHash::Unusable
        });
        self.entries.push((user.to_owned(), parsed));
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The hash of `user` (its first line).
    pub fn lookup(&self, user: &str) -> Option<&PasswordHash> {
        self.entries.iter().find(|(u, _)| u == user).map(|(_, h)| h)
    }

    /// Checks `user` and `password`.
    pub fn check(&self, user: &str, password: &[u8]) -> Check {
        self.lookup(user)
            .map_or(Check::Invalid, |h| h.check(password))
    }
}

const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl PasswordHash {
    /// Parses one stored hash of `user` (named in errors).
    pub fn parse(user: &str, hash: &str) -> Result<Self, EntryError> {
        let malformed = |scheme| EntryError::Malformed {
            user: user.to_owned(),
            scheme,
        };
        let unsupported = |scheme| EntryError::Unsupported {
            user: user.to_owned(),
            scheme,
        };
        if hash.is_empty() {
            return Err(EntryError::Empty(user.to_owned()));
        }
        if let Some(pw) = hash.strip_prefix("{PLAIN}") {
            return Ok(Self::Plain(pw.to_owned()));
        }
        if let Some(b64) = hash.strip_prefix("{SHA}") {
            let raw = STANDARD.decode(b64).map_err(|_| malformed("{SHA}"))?;
            return raw
                .try_into()
                .map(Self::Sha1)
                .map_err(|_| malformed("{SHA}"));
        }
        if let Some(b64) = hash.strip_prefix("{SSHA}") {
            let raw = STANDARD.decode(b64).map_err(|_| malformed("{SSHA}"))?;
            if raw.len() <= 20 {
                return Err(malformed("{SSHA}"));
            }
            let (digest, salt) = raw.split_at(20);
            return Ok(Self::Ssha {
                digest: digest.try_into().map_err(|_| malformed("{SSHA}"))?,
                salt: salt.to_vec(),
            });
        }
        for magic in ["$apr1$", "$1$"] {
            if let Some(rest) = hash.strip_prefix(magic) {
                let scheme = if magic == "$1$" { "MD5-crypt" } else { "APR1" };
                let (salt, digest) = rest.split_once('$').ok_or_else(|| malformed(scheme))?;
                if salt.len() > 8
                    || digest.len() != 22
                    || !salt
                        .bytes()
                        .chain(digest.bytes())
                        .all(|b| CRYPT64.contains(&b))
                {
                    return Err(malformed(scheme));
                }
                return Ok(Self::Md5Crypt {
                    magic: if magic == "$1$" { "$1$" } else { "$apr1$" },
                    salt: salt.to_owned(),
                    digest: digest.to_owned(),
                });
            }
        }
        if ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|p| hash.starts_with(p))
        {
            return match hash.parse::<bcrypt::HashParts>() {
                Ok(_) => Ok(Self::Bcrypt(hash.to_owned())),
                Err(_) => Err(malformed("bcrypt")),
            };
        }
        Err(unsupported(match hash.as_bytes() {
            [b'$', b'5', b'$', ..] => "SHA-256-crypt ($5$)",
            [b'$', b'6', b'$', ..] => "SHA-512-crypt ($6$)",
            [b'$', b'y', b'$', ..] => "yescrypt ($y$)",
            [b'$', ..] | [b'{', ..] => "this scheme's",
            _ if hash.len() == 13 => "DES-crypt",
            _ => "plain-text (write {PLAIN} before a clear password)",
        }))
    }

    /// Checks `password` against this hash, comparing in constant time.
    pub fn check(&self, password: &[u8]) -> Check {
        let ok = match self {
            Self::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Self::Md5Crypt {
                magic,
                salt,
                digest,
            } => bool::from(
                md5_crypt(password, magic.as_bytes(), salt.as_bytes()).ct_eq(digest.as_bytes()),
            ),
            Self::Sha1(d) => bool::from(sha1(&[password]).ct_eq(d)),
            Self::Ssha { digest, salt } => bool::from(sha1(&[password, salt]).ct_eq(digest)),
            Self::Plain(p) => bool::from(p.as_bytes().ct_eq(password)),
            Self::Unusable => return Check::Unusable,
        };
        if ok { Check::Valid } else { Check::Invalid }
    }
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut ctx = aws_lc::digest::Context::new(&aws_lc::digest::SHA1_FOR_LEGACY_USE_ONLY);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0; 20];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// MD5-crypt (Poul-Henning Kamp's, as FreeBSD, glibc and Apache's APR write it), the
/// 22-character digest for `magic` (`$1$` or `$apr1$`) and `salt`.
fn md5_crypt(pw: &[u8], magic: &[u8], salt: &[u8]) -> Vec<u8> {
    let mut alt = Md5::new();
    alt.update(pw);
    alt.update(salt);
    alt.update(pw);
    let alt = alt.finalize();
    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(magic);
    ctx.update(salt);
    for chunk in pw.chunks(16) {
        ctx.update(&alt[..chunk.len()]);
    }
    let mut i = pw.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1]);
        }
        i >>= 1;
    }
    let mut f = ctx.finalize();
    for i in 0..1000 {
        let mut c = Md5::new();
        if i & 1 == 1 {
            c.update(pw);
        } else {
            c.update(f);
        }
        if i % 3 != 0 {
            c.update(salt);
        }
        if i % 7 != 0 {
            c.update(pw);
        }
        if i & 1 == 1 {
            c.update(f);
        } else {
            c.update(pw);
        }
        f = c.finalize();
    }
    let mut out = Vec::with_capacity(22);
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(CRYPT64[(v & 0x3f) as usize]);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put(
            (u32::from(f[a]) << 16) | (u32::from(f[b]) << 8) | u32::from(f[c]),
            4,
        );
    }
    put(u32::from(f[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with real tools, the command beside each (bcrypt at cost 4 to keep tests fast;
    /// `$2b$`/`$2a$` are the same `$2y$` hash with the prefix python's bcrypt and OpenBSD
    /// write).
    const FILE: &str = "\
# htpasswd -nbB -C 4 alice 'open sesame'
alice:$2y$04$819XnYcL9A1aDak.40Hun.Zgf4bDReZis2dEjQuDVSPdYLI9jsD3u
# htpasswd -nbm bob hunter2
bob:$apr1$IOcJUUcO$aN82yU9C9PeYD9JyvRCB8/:a comment after the hash\r
# htpasswd -nbs carol 'pa:ss'
carol:{SHA}XyRLaTIb/WCdo8CuWc58gPVHl68=
# openssl passwd -1 -salt saltsalt 'md5 crypt'
erin:$1$saltsalt$o0XqEAEvoW3Z4QVblWNHY.
# openssl passwd -apr1 -salt abcdefgh 'apr one'
frank:$apr1$abcdefgh$KLzKtMj5ginboRIQUonn8.
grace:{PLAIN}plain text
alice2b:$2b$04$819XnYcL9A1aDak.40Hun.Zgf4bDReZis2dEjQuDVSPdYLI9jsD3u
alice2a:$2a$04$819XnYcL9A1aDak.40Hun.Zgf4bDReZis2dEjQuDVSPdYLI9jsD3u
a line without a colon
bob:{PLAIN}shadowed: the first line of a user wins
";

    #[test]
    fn users_check_as_nginx_does() {
        let (file, errors) = Htpasswd::parse(FILE);
        assert_eq!(errors, vec![]);
        for (user, password, want) in [
            ("alice", "open sesame", Check::Valid),
            ("alice", "open sesame ", Check::Invalid),
            ("alice2b", "open sesame", Check::Valid),
            ("alice2a", "open sesame", Check::Valid),
            ("bob", "hunter2", Check::Valid),
            ("bob", "shadowed", Check::Invalid),
            ("bob", "Hunter2", Check::Invalid),
            ("carol", "pa:ss", Check::Valid),
            ("carol", "pa", Check::Invalid),
            ("erin", "md5 crypt", Check::Valid),
            ("erin", "md5 crypT", Check::Invalid),
            ("frank", "apr one", Check::Valid),
            ("frank", "", Check::Invalid),
            ("grace", "plain text", Check::Valid),
            ("grace", "plain", Check::Invalid),
            ("mallory", "open sesame", Check::Invalid),
            ("", "", Check::Invalid),
            ("# htpasswd -nbm bob hunter2", "", Check::Invalid),
        ] {
            assert_eq!(
                file.check(user, password.as_bytes()),
                want,
                "{user}:{password}"
            );
        }
    }

    #[test]
    fn unusable_entries_are_reported_and_answer_500() {
        // (line, user, a word of the error)
        for (line, user, word) in [
            // ingress-nginx's auth.go e2e test: "foo:" gives 500.
            ("foo:", "foo", "empty"),
            // htpasswd -nbd dave secret
            ("dave:aFs8iA.REo/iA", "dave", "DES-crypt"),
            // openssl passwd -5 -salt s5 five
            (
                "eve:$5$s5$2B5.lLgLytpZaNOB.qnLiBXGGJSNQmTZWG8ot44eLZD",
                "eve",
                "$5$",
            ),
            ("x:clear", "x", "{PLAIN}"),
            ("y:{SHA}not base64!", "y", "malformed {SHA}"),
            ("y:{SHA}AAAA", "y", "malformed {SHA}"),
            ("z:$apr1$toolongsalt$KLzKtMj5ginboRIQUonn8.", "z", "APR1"),
            ("z:$1$salt$short", "z", "MD5-crypt"),
            ("w:$2y$04$tooshort", "w", "bcrypt"),
        ] {
            let (file, errors) = Htpasswd::parse(line);
            assert_eq!(errors.len(), 1, "{line}");
            assert_eq!(errors[0].0, 1);
            assert!(
                errors[0].1.to_string().contains(word),
                "{line}: {}",
                errors[0].1
            );
            assert_eq!(file.check(user, b"anything"), Check::Unusable, "{line}");
        }
    }

    #[test]
    fn ssha_and_auth_map_pairs() {
        // {SSHA}: base64(SHA-1("secret" + "salt") + "salt"), as slappasswd writes it.
        let mut raw = sha1(&[b"secret", b"salt"]).to_vec();
        raw.extend_from_slice(b"salt");
        let ssha = format!("{{SSHA}}{}", STANDARD.encode(raw));
        let (file, errors) = Htpasswd::from_pairs([
            ("u", ssha.as_str()),
            ("v", "{PLAIN}v:a comment\n"),
            ("w", ""),
        ]);
        assert_eq!(errors, vec![EntryError::Empty("w".to_owned())]);
        assert_eq!(file.len(), 3);
        assert_eq!(file.check("u", b"secret"), Check::Valid);
        assert_eq!(file.check("u", b"salt"), Check::Invalid);
        assert_eq!(file.check("v", b"v"), Check::Valid);
    }

    #[test]
    fn md5_crypt_matches_openssl() {
        // openssl passwd -1 -salt saltsalt 'md5 crypt'
        assert_eq!(
            md5_crypt(b"md5 crypt", b"$1$", b"saltsalt"),
            b"o0XqEAEvoW3Z4QVblWNHY."
        );
    }
}
