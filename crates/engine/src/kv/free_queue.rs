//! The free-block queue: every unreferenced block, in eviction order (front = next to hand out).
//!
//! A doubly-linked list threaded through two arrays indexed by block id, so that a free block which
//! a prefix-cache hit revives can be unlinked from the middle in O(1) (vLLM's
//! `FreeKVCacheBlockQueue`). A `VecDeque` would make that removal O(n) per hit.

use super::BlockId;

/// "No neighbour". Never a valid id: ids are `< num_blocks <= u32::MAX`.
const NIL: BlockId = BlockId::MAX;

#[derive(Debug, Clone)]
pub(crate) struct FreeQueue {
    prev: Vec<BlockId>,
    next: Vec<BlockId>,
    queued: Vec<bool>,
    head: BlockId,
    tail: BlockId,
    len: usize,
}

impl FreeQueue {
    /// All `num_blocks` blocks queued in id order 0, 1, 2, ...
    pub(crate) fn new(num_blocks: u32) -> Self {
        let n = num_blocks as usize;
        let prev = (0..num_blocks).map(|i| if i == 0 { NIL } else { i - 1 }).collect();
        let next = (0..num_blocks).map(|i| if i + 1 == num_blocks { NIL } else { i + 1 }).collect();
        let (head, tail) = if n == 0 { (NIL, NIL) } else { (0, num_blocks - 1) };
        Self { prev, next, queued: vec![true; n], head, tail, len: n }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn contains(&self, id: BlockId) -> bool {
        self.queued.get(id as usize).copied().unwrap_or(false)
    }

    pub(crate) fn pop_front(&mut self) -> Option<BlockId> {
        let id = self.head;
        if id == NIL {
            return None;
        }
        self.remove(id);
        Some(id)
    }

    /// Unlinks `id`; a no-op if it is not queued (callers check, this keeps the list sound anyway).
    pub(crate) fn remove(&mut self, id: BlockId) {
        let queued = self.contains(id);
        debug_assert!(queued, "block {id} removed from the free queue but not in it");
        if !queued {
            return;
        }
        let i = id as usize;
        let (p, n) = (self.prev[i], self.next[i]);
        match p {
            NIL => self.head = n,
            p => self.next[p as usize] = n,
        }
        match n {
            NIL => self.tail = p,
            n => self.prev[n as usize] = p,
        }
        self.prev[i] = NIL;
        self.next[i] = NIL;
        self.queued[i] = false;
        self.len -= 1;
    }

    pub(crate) fn push_back(&mut self, id: BlockId) {
        if !self.can_push(id) {
            return;
        }
        let i = id as usize;
        self.prev[i] = self.tail;
        self.next[i] = NIL;
        match self.tail {
            NIL => self.head = id,
            t => self.next[t as usize] = id,
        }
        self.tail = id;
        self.queued[i] = true;
        self.len += 1;
    }

    pub(crate) fn push_front(&mut self, id: BlockId) {
        if !self.can_push(id) {
            return;
        }
        let i = id as usize;
        self.prev[i] = NIL;
        self.next[i] = self.head;
        match self.head {
            NIL => self.tail = id,
            h => self.prev[h as usize] = id,
        }
        self.head = id;
        self.queued[i] = true;
        self.len += 1;
    }

    fn can_push(&self, id: BlockId) -> bool {
        let ok = (id as usize) < self.queued.len() && !self.contains(id);
        debug_assert!(ok, "block {id} pushed onto the free queue twice or out of range");
        ok
    }

    /// Front to back.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = BlockId> + '_ {
        let mut cur = self.head;
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let id = cur;
            cur = self.next[id as usize];
            Some(id)
        })
    }

    /// Links agree both ways, `len` and the `queued` flags match what a walk from the head finds.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut seen = 0usize;
        let mut prev = NIL;
        let mut cur = self.head;
        while cur != NIL {
            let i = cur as usize;
            if i >= self.queued.len() || !self.queued[i] {
                return Err(format!("free queue reaches block {cur}, which is not marked queued"));
            }
            if self.prev[i] != prev {
                return Err(format!("free queue: prev of {cur} is {}, expected {prev}", self.prev[i]));
            }
            seen += 1;
            if seen > self.queued.len() {
                return Err("free queue has a cycle".into());
            }
            prev = cur;
            cur = self.next[i];
        }
        if self.tail != prev {
            return Err(format!("free queue tail is {}, walk ends at {prev}", self.tail));
        }
        let flagged = self.queued.iter().filter(|&&q| q).count();
        if seen != self.len || flagged != self.len {
            return Err(format!("free queue len {} but walk finds {seen} and {flagged} are flagged", self.len));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(q: &FreeQueue) -> Vec<BlockId> {
        q.iter().collect()
    }

    #[test]
    fn starts_in_id_order_and_pops_from_the_front() {
        let mut q = FreeQueue::new(4);
        assert_eq!(order(&q), [0, 1, 2, 3]);
        assert_eq!(q.pop_front(), Some(0));
        assert_eq!(q.pop_front(), Some(1));
        assert_eq!(order(&q), [2, 3]);
        q.check().unwrap();
    }

    #[test]
    fn removes_from_head_middle_and_tail() {
        let mut q = FreeQueue::new(5);
        q.remove(2);
        q.remove(0);
        q.remove(4);
        assert_eq!(order(&q), [1, 3]);
        assert_eq!(q.len(), 2);
        q.check().unwrap();
        q.push_back(4);
        q.push_front(0);
        q.push_back(2);
        assert_eq!(order(&q), [0, 1, 3, 4, 2]);
        q.check().unwrap();
    }

    #[test]
    fn drains_to_empty_and_refills() {
        let mut q = FreeQueue::new(2);
        assert_eq!((q.pop_front(), q.pop_front(), q.pop_front()), (Some(0), Some(1), None));
        q.check().unwrap();
        q.push_front(1);
        q.push_front(0);
        assert_eq!(order(&q), [0, 1]);
        q.check().unwrap();
        assert!(FreeQueue::new(0).pop_front().is_none());
    }
}
