//! Checksums and format rules that turn a weak pattern match into a confident one (or drop it):
//! Luhn, IBAN mod-97 with per-country lengths, the SSA's SSN rules, base58check and bech32.

use sha2::{Digest, Sha256};

/// What a validator says about a pattern match (Presidio's `validate_result`/`invalidate_result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// The checksum holds: the score becomes 1.0.
    Valid,
    /// Cannot be this entity: the match is dropped.
    Invalid,
    /// No checksum to test: the pattern's score stands.
    Unknown,
}

impl From<bool> for Validation {
    fn from(ok: bool) -> Self {
        if ok {
            Validation::Valid
        } else {
            Validation::Invalid
        }
    }
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect()
}

/// Luhn: from the right, every second digit doubled (minus 9 when over 9); the sum is 0 mod 10.
pub fn luhn(number: &str) -> bool {
    let d = digits(number);
    if d.len() < 2 {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = 2 * x;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

pub fn credit_card(s: &str) -> Validation {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) || d.iter().all(|&x| x == d[0]) {
        return Validation::Invalid;
    }
    luhn(s).into()
}

/// IBAN lengths by country (SWIFT IBAN registry).
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16), ("BG", 22), ("BH", 22),
    ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22), ("CY", 28), ("CZ", 24), ("DE", 22), ("DK", 18), ("DO", 28),
    ("EE", 20), ("EG", 29), ("ES", 24), ("FI", 18), ("FO", 18), ("FR", 27), ("GB", 22), ("GE", 22), ("GI", 23),
    ("GL", 18), ("GR", 27), ("GT", 28), ("HR", 21), ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23), ("IS", 26),
    ("IT", 27), ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32), ("LI", 21), ("LT", 20), ("LU", 20),
    ("LV", 21), ("MC", 27), ("MD", 24), ("ME", 22), ("MK", 19), ("MR", 27), ("MT", 31), ("MU", 30), ("NL", 18),
    ("NO", 15), ("PK", 24), ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("SA", 24),
    ("SC", 31), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27), ("ST", 25), ("SV", 28), ("TL", 23), ("TN", 24),
    ("TR", 26), ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20),
];

/// The IBAN's expected length for its country, if the country uses IBANs.
pub fn iban_length(country: &str) -> Option<usize> {
    IBAN_LENGTHS.iter().find(|(c, _)| *c == country).map(|&(_, n)| n)
}

/// ISO 13616: the country's length, then `(bban + country + check) mod 97 == 1` with letters as
/// 10..35. Spaces are ignored.
pub fn iban(s: &str) -> Validation {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).map(|c| c.to_ascii_uppercase()).collect();
    if compact.len() < 5 || !compact.is_ascii() {
        return Validation::Invalid;
    }
    if iban_length(&compact[..2]) != Some(compact.len()) {
        return Validation::Invalid;
    }
    let rearranged = compact[4..].chars().chain(compact[..4].chars());
    let mut rem: u32 = 0;
    for c in rearranged {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return Validation::Invalid,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    (rem == 1).into()
}

/// The SSA's rules: area 000, 666 and 900-999 are never issued, nor group 00 nor serial 0000;
/// numbers of one repeated digit and well-known samples (078-05-1120, 123-45-6789) are not real.
pub fn us_ssn(s: &str) -> Validation {
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    if d.len() != 9 {
        return Validation::Invalid;
    }
    let (area, group, serial) = (&d[..3], &d[3..5], &d[5..]);
    let invalid = area == "000"
        || area == "666"
        || area.starts_with('9')
        || group == "00"
        || serial == "0000"
        || d.bytes().all(|b| b == d.as_bytes()[0])
        || ["123456789", "078051120", "219099999", "987654320"].contains(&d.as_str());
    if invalid {
        Validation::Invalid
    } else {
        Validation::Unknown
    }
}

const B58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

pub fn base58_decode(s: &str) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = vec![];
    for c in s.bytes() {
        let mut carry = B58.iter().position(|&b| b == c)? as u32;
        for byte in out.iter_mut().rev() {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            out.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|&b| b == b'1').count();
    let mut v = vec![0u8; zeros];
    v.extend(out);
    Some(v)
}

pub fn base58_encode(data: &[u8]) -> String {
    let mut digits: Vec<u8> = vec![];
    for &byte in data {
        let mut carry = u32::from(byte);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = data.iter().take_while(|&&b| b == 0).count();
    std::iter::repeat_n('1', zeros).chain(digits.iter().rev().map(|&d| B58[d as usize] as char)).collect()
}

/// The first 4 bytes of SHA-256(SHA-256(payload)).
pub fn base58_checksum(payload: &[u8]) -> [u8; 4] {
    let h = Sha256::digest(Sha256::digest(payload));
    [h[0], h[1], h[2], h[3]]
}

/// A Bitcoin base58check address: 25 bytes, version 0x00 (P2PKH) or 0x05 (P2SH), checksum.
pub fn base58check_address(s: &str) -> Validation {
    let Some(b) = base58_decode(s) else { return Validation::Invalid };
    if b.len() != 25 || !matches!(b[0], 0x00 | 0x05) {
        return Validation::Invalid;
    }
    (base58_checksum(&b[..21]) == b[21..]).into()
}

const BECH32: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn bech32_polymod(values: impl Iterator<Item = u8>) -> u32 {
    const GEN: [u32; 5] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x1ffffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

fn hrp_expand(hrp: &str) -> Vec<u8> {
    let b = hrp.as_bytes();
    b.iter().map(|c| c >> 5).chain([0]).chain(b.iter().map(|c| c & 31)).collect()
}

/// bech32 (BIP-173, constant 1) or bech32m (BIP-350) checksum of a lower-case string.
pub fn bech32_address(s: &str) -> Validation {
    let s = s.to_ascii_lowercase();
    let Some(pos) = s.rfind('1') else { return Validation::Invalid };
    let (hrp, data) = (&s[..pos], &s[pos + 1..]);
    if hrp.is_empty() || data.len() < 6 {
        return Validation::Invalid;
    }
    let mut vals = Vec::with_capacity(data.len());
    for c in data.bytes() {
        match BECH32.iter().position(|&b| b == c) {
            Some(v) => vals.push(v as u8),
            None => return Validation::Invalid,
        }
    }
    let pm = bech32_polymod(hrp_expand(hrp).into_iter().chain(vals));
    (pm == 1 || pm == 0x2bc830a3).into()
}

/// The bech32 checksum characters for `hrp` + 5-bit `data` (used to build test vectors).
pub fn bech32_checksum(hrp: &str, data: &[u8], bech32m: bool) -> String {
    let konst = if bech32m { 0x2bc830a3 } else { 1 };
    let pm = bech32_polymod(hrp_expand(hrp).into_iter().chain(data.iter().copied()).chain([0; 6])) ^ konst;
    (0..6).map(|i| BECH32[((pm >> (5 * (5 - i))) & 31) as usize] as char).collect()
}

/// An email's domain ends in an alphabetic TLD of 2 to 24 letters and has no empty label.
pub fn email(s: &str) -> Validation {
    let Some((local, domain)) = s.rsplit_once('@') else { return Validation::Invalid };
    if local.is_empty() || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Validation::Invalid;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let tld = labels.last().copied().unwrap_or("");
    let ok = labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
        && (2..=24).contains(&tld.len())
        && tld.bytes().all(|b| b.is_ascii_alphabetic());
    ok.into()
}

pub fn ipv4(s: &str) -> Validation {
    match s.parse::<std::net::Ipv4Addr>() {
        Ok(_) => Validation::Unknown,
        Err(_) => Validation::Invalid,
    }
}

/// Parses as IPv6 and has at least three groups (so `a::b` in code is not an address).
pub fn ipv6(s: &str) -> Validation {
    let groups = s.split(':').filter(|g| !g.is_empty()).count();
    match s.parse::<std::net::Ipv6Addr>() {
        Ok(_) if groups >= 3 || s == "::1" => Validation::Unknown,
        _ => Validation::Invalid,
    }
}

/// A JWT's header decodes (base64url) to a JSON object with an `alg`.
pub fn jwt(s: &str) -> Validation {
    use base64::Engine;
    let Some(header) = s.split('.').next() else { return Validation::Invalid };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')) else {
        return Validation::Invalid;
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) if v.get("alg").is_some() => Validation::Valid,
        _ => Validation::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_published_vectors() {
        assert!(luhn("4111111111111111"));
        assert!(!luhn("4111111111111112"));
        assert!(luhn("79927398713")); // Wikipedia's example
        assert!(!luhn("79927398710"));
        assert_eq!(credit_card("4111 1111 1111 1111"), Validation::Valid);
        assert_eq!(credit_card("4111-1111-1111-1112"), Validation::Invalid);
        assert_eq!(credit_card("5555555555554444"), Validation::Valid);
        assert_eq!(credit_card("378282246310005"), Validation::Valid); // Amex test number
        assert_eq!(credit_card("0000000000000000"), Validation::Invalid);
    }

    #[test]
    fn iban_published_vectors() {
        assert_eq!(iban("GB82WEST12345698765432"), Validation::Valid);
        assert_eq!(iban("GB82 WEST 1234 5698 7654 32"), Validation::Valid);
        assert_eq!(iban("DE89370400440532013000"), Validation::Valid);
        assert_eq!(iban("FR1420041010050500013M02606"), Validation::Valid);
        assert_eq!(iban("GB83WEST12345698765432"), Validation::Invalid); // check digits
        assert_eq!(iban("GB82WEST1234569876543"), Validation::Invalid); // length for GB
        assert_eq!(iban("ZZ82WEST12345698765432"), Validation::Invalid); // no such country
    }

    #[test]
    fn ssn_rules() {
        assert_eq!(us_ssn("536-22-1234"), Validation::Unknown);
        for bad in ["000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-4567", "123-45-0000"] {
            assert_eq!(us_ssn(bad), Validation::Invalid, "{bad}");
        }
        for bad in ["111-11-1111", "123-45-6789", "078-05-1120"] {
            assert_eq!(us_ssn(bad), Validation::Invalid, "{bad}");
        }
    }

    #[test]
    fn bitcoin_addresses() {
        // Genesis block coinbase address; BIP-173 and BIP-350 examples.
        assert_eq!(base58check_address("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"), Validation::Valid);
        assert_eq!(base58check_address("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb"), Validation::Invalid);
        assert_eq!(base58check_address("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"), Validation::Valid);
        assert_eq!(bech32_address("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"), Validation::Valid);
        assert_eq!(bech32_address("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4"), Validation::Valid);
        assert_eq!(bech32_address("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5"), Validation::Invalid);
        assert_eq!(bech32_address("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"), Validation::Valid);
        let enc = base58_encode(&base58_decode("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa").unwrap());
        assert_eq!(enc, "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa");
    }

    #[test]
    fn emails_ips_jwts() {
        assert_eq!(email("jane.doe@example.co.uk"), Validation::Valid);
        assert_eq!(email("a@b"), Validation::Invalid);
        assert_eq!(email("x@host.c0m"), Validation::Invalid);
        assert_eq!(ipv4("192.168.0.1"), Validation::Unknown);
        assert_eq!(ipv4("256.1.1.1"), Validation::Invalid);
        assert_eq!(ipv6("2001:db8::8a2e:370:7334"), Validation::Unknown);
        assert_eq!(ipv6("a::b"), Validation::Invalid);
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(jwt(t), Validation::Valid);
    }
}
