//! A second, minimal pass over a GGUF header that candle refused, to say which tensor has a
//! type we cannot run: candle stops at the first unknown type id without naming the tensor.

use std::io::{self, Read};

fn u32_(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn u64_(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied != n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn string(r: &mut impl Read) -> io::Result<String> {
    let n = u64_(r)?;
    if n > 1 << 20 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "string too long"));
    }
    let mut b = vec![0; n as usize];
    r.read_exact(&mut b)?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

fn skip_value(r: &mut impl Read, t: u32) -> io::Result<()> {
    match t {
        0 | 1 | 7 => skip(r, 1),
        2 | 3 => skip(r, 2),
        4..=6 => skip(r, 4),
        10..=12 => skip(r, 8),
        8 => {
            let n = u64_(r)?;
            skip(r, n)
        }
        9 => {
            let (et, n) = (u32_(r)?, u64_(r)?);
            (0..n).try_for_each(|_| skip_value(r, et))
        }
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, format!("unknown metadata value type {t}"))),
    }
}

/// The first tensor whose type id `supported` rejects: `(name, type id)`; `None` if every type
/// is supported or the header cannot be read this far.
pub fn first_unsupported(r: &mut impl Read, supported: impl Fn(u32) -> bool) -> Option<(String, u32)> {
    let scan = |r: &mut dyn Read| -> io::Result<Option<(String, u32)>> {
        let mut r = r;
        let (_magic, version) = (u32_(&mut r)?, u32_(&mut r)?);
        if version < 2 {
            return Ok(None);
        }
        let (n_tensors, n_kv) = (u64_(&mut r)?, u64_(&mut r)?);
        for _ in 0..n_kv {
            string(&mut r)?;
            let t = u32_(&mut r)?;
            skip_value(&mut r, t)?;
        }
        for _ in 0..n_tensors {
            let name = string(&mut r)?;
            let n_dims = u32_(&mut r)?;
            skip(&mut r, 8 * n_dims as u64)?;
            let t = u32_(&mut r)?;
            skip(&mut r, 8)?;
            if !supported(t) {
                return Ok(Some((name, t)));
            }
        }
        Ok(None)
    };
    scan(r).ok().flatten()
}
