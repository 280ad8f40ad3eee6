//! Signed bearer tokens (JWT, HS256): the subject is the user id, `dev` the
//! device the token was issued to (when there is one), `exp` its end.
//!
//! A request's identity comes from its token alone: a `user_id` in the body
//! must match the subject, and an `X-Device-Id` header must match `dev`. A
//! header on a token without `dev` is not trusted and is ignored, so no
//! per-user or per-device rule can be dodged by editing the request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::buyer::{Buyer, DeviceId};

/// Shortest signing secret, in bytes (HS256's key is 256 bits).
pub const SECRET_MIN: usize = 32;
/// Longest signing secret, in bytes.
pub const SECRET_MAX: usize = 1024;
/// Longest token accepted (checked before any decoding work).
pub const TOKEN_MAX: usize = 4096;
/// Clock skew allowed on `exp` between the minting service and this one.
pub const LEEWAY_SECS: u64 = 5;

/// The claims of a buyer's token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id, in decimal.
    sub: String,
    /// Expiry, Unix seconds.
    exp: u64,
    /// Issued at, Unix seconds.
    iat: u64,
    /// The device the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dev: Option<String>,
}

/// Why a request is not authenticated (every one is a 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    /// The token's `exp` has passed.
    #[error("the bearer token has expired: get a new one")]
    Expired,
    /// Bad signature, wrong algorithm, malformed, or its subject is not a user id.
    #[error("the bearer token is not valid ({0})")]
    Invalid(&'static str),
    /// `X-Device-Id` names another device than the one the token was issued to.
    #[error("X-Device-Id does not match the device the token was issued to")]
    DeviceMismatch,
}

/// A signing secret that breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token secret must be {SECRET_MIN} to {SECRET_MAX} bytes, got {0}")]
pub struct SecretError(pub usize);

/// Minting failed (the claims could not be signed: never with an HS256 key).
#[derive(Debug, thiserror::Error)]
#[error("could not sign a token: {0}")]
pub struct MintError(#[from] jsonwebtoken::errors::Error);

/// The keys of one signing secret: mint and verify buyers' tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    /// Keys of `secret`.
    ///
    /// # Errors
    ///
    /// `secret` is shorter than [`SECRET_MIN`] or longer than [`SECRET_MAX`] bytes.
    pub fn new(secret: &[u8]) -> Result<Self, SecretError> {
        if !(SECRET_MIN..=SECRET_MAX).contains(&secret.len()) {
            return Err(SecretError(secret.len()));
        }
        let encoding = EncodingKey::from_secret(secret).map_err(|_| SecretError(secret.len()))?;
        let decoding = DecodingKey::from_secret(secret).map_err(|_| SecretError(secret.len()))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            encoding,
            decoding,
            validation,
        })
    }

    /// A token for `user_id` on `device`, valid until `expires`.
    ///
    /// # Errors
    ///
    /// Signing failed (not with an HS256 key).
    pub fn mint(
        &self,
        user_id: u64,
        device: Option<&DeviceId>,
        expires: SystemTime,
    ) -> Result<String, MintError> {
        let claims = Claims {
            sub: user_id.to_string(),
            exp: unix(expires),
            iat: unix(SystemTime::now()),
            dev: device.map(|d| d.as_str().to_owned()),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// A token for `user_id` on `device`, valid for `ttl` from now.
    ///
    /// # Errors
    ///
    /// Signing failed (not with an HS256 key).
    pub fn mint_for(
        &self,
        user_id: u64,
        device: Option<&DeviceId>,
        ttl: Duration,
    ) -> Result<String, MintError> {
        self.mint(user_id, device, SystemTime::now() + ttl)
    }

    /// The buyer an `Authorization` header value proves, given the request's
    /// `X-Device-Id` header value.
    ///
    /// # Errors
    ///
    /// No bearer token, an expired or invalid one, or a device header that
    /// contradicts the token.
    pub fn verify(
        &self,
        authorization: Option<&[u8]>,
        device_header: Option<&[u8]>,
    ) -> Result<Buyer, AuthError> {
        let token = authorization.and_then(bearer).ok_or(AuthError::Missing)?;
        if token.len() > TOKEN_MAX {
            return Err(AuthError::Invalid("longer than 4096 bytes"));
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature"),
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::Invalid("not HS256")
                }
                ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
                    AuthError::Invalid("missing or malformed claims")
                }
                _ => AuthError::Invalid("malformed"),
            })?
            .claims;
        let user_id = claims
            .sub
            .parse::<u64>()
            .map_err(|_| AuthError::Invalid("the subject is not a user id"))?;
        let device = match claims.dev {
            Some(dev) => {
                Some(DeviceId::parse(&dev).map_err(|_| AuthError::Invalid("malformed device id"))?)
            }
            None => None,
        };
        if let (Some(header), Some(device)) = (device_header, &device)
            && header != device.as_str().as_bytes()
        {
            return Err(AuthError::DeviceMismatch);
        }
        Ok(Buyer { user_id, device })
    }
}

/// The token of a `Bearer` authorization value (the scheme is case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn keys() -> TokenKeys {
        TokenKeys::new(SECRET).unwrap()
    }

    fn auth(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[test]
    fn a_minted_token_proves_its_user_and_device() {
        let keys = keys();
        let phone = DeviceId::parse("phone-1").unwrap();
        let token = keys
            .mint_for(42, Some(&phone), Duration::from_secs(60))
            .unwrap();
        let buyer = keys.verify(Some(&auth(&token)), None).unwrap();
        assert_eq!(
            buyer,
            Buyer {
                user_id: 42,
                device: Some(phone.clone())
            }
        );
        // The same device in the header: fine; another: refused.
        assert_eq!(
            keys.verify(Some(&auth(&token)), Some(b"phone-1")),
            Ok(buyer)
        );
        assert_eq!(
            keys.verify(Some(&auth(&token)), Some(b"phone-2")),
            Err(AuthError::DeviceMismatch)
        );
        // A token without a device ignores the header.
        let plain = keys.mint_for(7, None, Duration::from_secs(60)).unwrap();
        assert_eq!(
            keys.verify(Some(&auth(&plain)), Some(b"anything")),
            Ok(Buyer {
                user_id: 7,
                device: None
            })
        );
        // The scheme is case-insensitive.
        let lower = format!("bearer {plain}").into_bytes();
        assert!(keys.verify(Some(&lower), None).is_ok());
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let keys = keys();
        assert_eq!(keys.verify(None, None), Err(AuthError::Missing));
        assert_eq!(
            keys.verify(Some(b"Basic abc"), None),
            Err(AuthError::Missing)
        );
        assert_eq!(keys.verify(Some(b"Bearer "), None), Err(AuthError::Missing));
        let past = SystemTime::now() - Duration::from_secs(LEEWAY_SECS + 60);
        let expired = keys.mint(1, None, past).unwrap();
        assert_eq!(
            keys.verify(Some(&auth(&expired)), None),
            Err(AuthError::Expired)
        );
        // Signed with another secret: a forgery.
        let other = TokenKeys::new(b"another secret, 32 bytes or more!").unwrap();
        let forged = other.mint_for(1, None, Duration::from_secs(60)).unwrap();
        assert_eq!(
            keys.verify(Some(&auth(&forged)), None),
            Err(AuthError::Invalid("bad signature"))
        );
        // An edited payload (another subject) under the original signature.
        let good = keys.mint_for(1, None, Duration::from_secs(60)).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let forged_claims = base64_url(br#"{"sub":"2","exp":99999999999,"iat":0}"#);
        let edited = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(
            keys.verify(Some(&auth(&edited)), None),
            Err(AuthError::Invalid("bad signature"))
        );
        // `alg: none`, unsigned.
        let none = format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#),
            forged_claims
        );
        assert!(matches!(
            keys.verify(Some(&auth(&none)), None),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            keys.verify(Some(b"Bearer not.a.token"), None),
            Err(AuthError::Invalid(_))
        ));
        let long = auth(&"a".repeat(TOKEN_MAX + 1));
        assert_eq!(
            keys.verify(Some(&long), None),
            Err(AuthError::Invalid("longer than 4096 bytes"))
        );
    }

    #[test]
    fn a_subject_that_is_not_a_user_id_is_refused() {
        let keys = keys();
        let claims = Claims {
            sub: "alice".into(),
            exp: unix(SystemTime::now()) + 60,
            iat: 0,
            dev: None,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert_eq!(
            keys.verify(Some(&auth(&token)), None),
            Err(AuthError::Invalid("the subject is not a user id"))
        );
    }

    #[test]
    fn secrets_have_a_range() {
        assert_eq!(TokenKeys::new(&[0; 31]).unwrap_err(), SecretError(31));
        assert!(TokenKeys::new(&[0; 32]).is_ok());
        assert!(TokenKeys::new(&[0; 1024]).is_ok());
        assert_eq!(TokenKeys::new(&[0; 1025]).unwrap_err(), SecretError(1025));
    }

    fn base64_url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}
