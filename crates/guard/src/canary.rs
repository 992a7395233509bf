//! Canary tokens (Rebuff's scheme): a random word hidden in the system prompt as
//! `<!-- {canary} -->`; if it shows up in the output, the system prompt leaked.

/// Eight random hex digits, like Rebuff's `secrets.token_hex(4)`.
pub fn new_canary() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// The system prompt with the canary comment in front.
pub fn embed(canary: &str, system_prompt: &str) -> String {
    format!("<!-- {canary} -->\n{system_prompt}")
}

/// Byte spans where the canary occurs in `text`.
pub fn leaks(canary: &str, text: &str) -> Vec<(usize, usize)> {
    if canary.is_empty() {
        return vec![];
    }
    text.match_indices(canary).map(|(i, m)| (i, i + m.len())).collect()
}
