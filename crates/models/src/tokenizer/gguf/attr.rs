//! Per-token attributes, a bit set as in llama.cpp (`llama_token_attr`): a token can be both
//! user-defined and control after the end-of-generation fix-ups, and carry strip flags.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Attr(u16);

impl Attr {
    pub const UNDEFINED: Attr = Attr(0);
    pub const UNKNOWN: Attr = Attr(1 << 0);
    pub const UNUSED: Attr = Attr(1 << 1);
    pub const NORMAL: Attr = Attr(1 << 2);
    pub const CONTROL: Attr = Attr(1 << 3);
    pub const USER_DEFINED: Attr = Attr(1 << 4);
    pub const BYTE: Attr = Attr(1 << 5);
    /// Whitespace left of the token is eaten when it is split out of the text.
    pub const LSTRIP: Attr = Attr(1 << 7);
    /// Whitespace right of the token is eaten when it is split out of the text.
    pub const RSTRIP: Attr = Attr(1 << 8);

    /// `tokenizer.ggml.token_type` values (gguf `TokenType`): 1 normal, 2 unknown, 3 control,
    /// 4 user-defined, 5 unused, 6 byte; anything else is undefined.
    pub fn from_gguf_type(t: i32) -> Attr {
        match t {
            1 => Attr::NORMAL,
            2 => Attr::UNKNOWN,
            3 => Attr::CONTROL,
            4 => Attr::USER_DEFINED,
            5 => Attr::UNUSED,
            6 => Attr::BYTE,
            _ => Attr::UNDEFINED,
        }
    }

    /// True when any bit of `other` is set.
    pub fn has(self, other: Attr) -> bool {
        self.0 & other.0 != 0
    }

    pub fn with(self, other: Attr) -> Attr {
        Attr(self.0 | other.0)
    }

    pub fn without(self, other: Attr) -> Attr {
        Attr(self.0 & !other.0)
    }
}

impl std::ops::BitOr for Attr {
    type Output = Attr;
    fn bitor(self, rhs: Attr) -> Attr {
        self.with(rhs)
    }
}
