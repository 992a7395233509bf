//! Memory for packed weights, backed by transparent huge pages where the kernel allows.
//!
//! A decode step streams every weight once (258 MB per token for SmolLM2-135M F16). On 4 KiB
//! pages that is a TLB miss and a page walk every 4 KiB; on one core of the 2-core EPYC this
//! project benchmarks on, SmolLM2's F16 decode matmuls streamed 31.4 GB/s on 4 KiB pages and
//! 35.4 GB/s on 2 MiB pages (`bench/RESULTS.md`, 2026-11-29 F16 entry).
//!
//! Huge pages need 2 MiB-aligned, 2 MiB-long runs of one mapping, and most weight matrices are
//! smaller than that (SmolLM2's attention projections are 0.7-1.1 MB), so matrices are cut
//! from shared slabs: anonymous mappings of [`SLAB`] bytes, 2 MiB-aligned and advised
//! `MADV_HUGEPAGE` (Linux's THP "madvise" mode, the common default, honours that). A matrix
//! larger than half a slab gets a slab of its own. A slab is unmapped when the last buffer cut
//! from it is dropped; buffers are never reused, so every buffer starts zeroed, as fresh
//! anonymous memory is. Where mapping fails, the buffer is an ordinary zeroed `Vec`.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, Weak};

use super::layout::Line;

/// Bytes per shared slab: a few layers of a small model, so the unfilled tail of the last
/// slab (touched pages only cost memory) is small next to the weights.
const SLAB: usize = 64 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// A zeroed, 64-byte-aligned run of [`Line`]s.
pub(crate) struct LineBuf {
    ptr: *mut Line,
    len: usize,
    /// What `ptr` points into: a slab, or (where mapping failed) `_heap`.
    _slab: Option<Arc<Slab>>,
    _heap: Vec<Line>,
}

// SAFETY: a `LineBuf` is the only handle to its `len` lines (slabs hand out disjoint ranges);
// the shared `Slab` only keeps the mapping alive.
unsafe impl Send for LineBuf {}
unsafe impl Sync for LineBuf {}

struct Slab {
    _map: memmap2::MmapMut,
    /// 2 MiB-aligned start of the usable bytes inside `_map`.
    base: *mut u8,
    size: usize,
}

// SAFETY: `base` points into `_map`, which lives as long as the slab; the slab itself is never
// read or written through, only cut into `LineBuf`s.
unsafe impl Send for Slab {}
unsafe impl Sync for Slab {}

impl Slab {
    fn map(size: usize) -> Option<Arc<Slab>> {
        // One extra huge page of address space to align the start; untouched, it costs nothing.
        let mut map = memmap2::MmapMut::map_anon(size + HUGE_PAGE).ok()?;
        #[cfg(target_os = "linux")]
        {
            // Only a hint: without THP the slab is ordinary memory.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        let raw = map.as_mut_ptr();
        let base = raw.wrapping_add(raw.align_offset(HUGE_PAGE));
        Some(Arc::new(Slab { _map: map, base, size }))
    }
}

/// The slab small buffers are cut from, and the bytes of it already handed out. Weak: a slab
/// whose buffers were all dropped is unmapped, not kept for the next model.
static CURRENT: Mutex<(Weak<Slab>, usize)> = Mutex::new((Weak::new(), 0));

impl LineBuf {
    pub(crate) fn zeroed(len: usize) -> Self {
        let bytes = len * std::mem::size_of::<Line>();
        if bytes > 0 {
            if let Some((slab, at)) = Self::cut(bytes) {
                // SAFETY: `at..at + bytes` lies inside the slab (see `cut`) and belongs to no
                // other buffer; the slab's base is 2 MiB-aligned and `at` a multiple of 64.
                let ptr = unsafe { slab.base.add(at) } as *mut Line;
                return Self { ptr, len, _slab: Some(slab), _heap: Vec::new() };
            }
        }
        let mut v = vec![Line([0; 64]); len];
        Self { ptr: v.as_mut_ptr(), len, _slab: None, _heap: v }
    }

    /// A slab and an offset in it with `bytes` free bytes.
    fn cut(bytes: usize) -> Option<(Arc<Slab>, usize)> {
        if bytes > SLAB / 2 {
            return Slab::map(bytes.next_multiple_of(HUGE_PAGE)).map(|s| (s, 0));
        }
        let mut cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        let slab = match cur.0.upgrade() {
            Some(s) if cur.1 + bytes <= s.size => s,
            _ => {
                let s = Slab::map(SLAB)?;
                *cur = (Arc::downgrade(&s), 0);
                s
            }
        };
        let at = cur.1;
        cur.1 = (at + bytes).next_multiple_of(std::mem::size_of::<Line>());
        Some((slab, at))
    }
}

impl Deref for LineBuf {
    type Target = [Line];
    fn deref(&self) -> &[Line] {
        // SAFETY: `ptr` is valid for `len` initialised (zeroed or written) lines while `_slab`
        // or `_heap` lives, and aligned for `Line`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl DerefMut for LineBuf {
    fn deref_mut(&mut self) -> &mut [Line] {
        // SAFETY: as `deref`; `&mut self` makes this the only reference to the range.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_disjoint_and_outlive_each_other() {
        // Small buffers share a slab; a large one gets its own; dropping any leaves the rest.
        let sizes = [1usize, 5, 1000, 17, SLAB / 64 / 2 + 1, 3];
        let mut bufs: Vec<LineBuf> = sizes.iter().map(|&n| LineBuf::zeroed(n)).collect();
        for (i, b) in bufs.iter_mut().enumerate() {
            assert!(b.iter().all(|l| l.0 == [0; 64]), "buffer {i} not zeroed");
            assert_eq!(b.as_ptr() as usize % 64, 0);
            b.iter_mut().for_each(|l| l.0 = [i as u8 + 1; 64]);
        }
        bufs.remove(1);
        let fresh = LineBuf::zeroed(40);
        assert!(fresh.iter().all(|l| l.0 == [0; 64]));
        for (b, want) in bufs.iter().zip([1u8, 3, 4, 5, 6]) {
            assert!(b.iter().all(|l| l.0 == [want; 64]), "buffer {want} was overwritten");
        }
        assert!(LineBuf::zeroed(0).is_empty());
    }
}
