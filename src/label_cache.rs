//! Label vectors kept across calls, for models whose labels see only themselves
//! (`independent` attention): the same labels arrive batch after batch in predict's stream,
//! eval and serve, and each is encoded once. Keyed by the label's tokens as the model reads
//! them (template and description included); bounded by a count, the least recently used
//! label dropped first.

use candle_core::Tensor;
use std::collections::HashMap;

pub const DEFAULT_CAPACITY: usize = 4096;

pub struct LabelCache {
    capacity: usize,
    /// Each label's head vector [hidden] and when it was last used.
    entries: HashMap<Vec<u32>, (Tensor, u64)>,
    clock: u64,
}

impl LabelCache {
    /// A cache of at most `capacity` labels; 0 keeps none.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
            clock: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The vector of the label with these tokens, if kept.
    pub fn get(&mut self, tokens: &[u32]) -> Option<Tensor> {
        self.clock += 1;
        let (vector, used) = self.entries.get_mut(tokens)?;
        *used = self.clock;
        Some(vector.clone())
    }

    /// Keeps `vector` for the label with these tokens, dropping the least recently used
    /// labels past the capacity.
    pub fn insert(&mut self, tokens: Vec<u32>, vector: Tensor) {
        if self.capacity == 0 {
            return;
        }
        self.clock += 1;
        self.entries.insert(tokens, (vector, self.clock));
        if self.entries.len() > self.capacity {
            let mut by_use: Vec<(u64, Vec<u32>)> = self
                .entries
                .iter()
                .map(|(tokens, (_, used))| (*used, tokens.clone()))
                .collect();
            // Drop down to 90% at once, so that a full cache is not sorted on every insert.
            let keep = self.capacity - self.capacity / 10;
            by_use.sort_unstable();
            for (_, tokens) in &by_use[..by_use.len() - keep] {
                self.entries.remove(tokens);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn vector(x: f32) -> Tensor {
        Tensor::new(&[x], &Device::Cpu).unwrap()
    }

    #[test]
    fn keeps_at_most_its_capacity_and_drops_the_least_recently_used() {
        let mut cache = LabelCache::new(10);
        for i in 0..10u32 {
            cache.insert(vec![i], vector(i as f32));
        }
        assert_eq!(cache.len(), 10);
        // Label 0 used again: it outlives labels 1.. when the cache overflows.
        assert!(cache.get(&[0]).is_some());
        cache.insert(vec![10], vector(10.0));
        assert_eq!(cache.len(), 9);
        assert!(cache.get(&[0]).is_some());
        assert!(cache.get(&[1]).is_none() && cache.get(&[2]).is_none());
        assert_eq!(
            cache.get(&[10]).unwrap().to_vec1::<f32>().unwrap(),
            vec![10.0]
        );
        let mut none = LabelCache::new(0);
        none.insert(vec![1], vector(1.0));
        assert!(none.is_empty());
    }
}
