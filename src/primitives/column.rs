//! [`AmountColumn`]: many amounts in 16 bytes each instead of 32.

use super::Amount;

/// The inline sentinel: the amount is in the side table.
const WIDE: u128 = u128::MAX;

/// `a` as an inline value: below 2^128 − 1 base units (the sentinel itself goes wide).
fn inline(a: Amount) -> Option<u128> {
    u128::try_from(a.raw()).ok().filter(|&v| v != WIDE)
}

/// A column of [`Amount`]s, exact over the whole 0 ..= 2^256 − 1 range, that keeps each
/// amount below 2^128 − 1 base units in 16 bytes and the rare larger ones in a side table.
///
/// Per-row results of a million-claimant run hold tens of millions of amounts; nearly all
/// of them fit in 128 bits (2^128 base units is 3.4 × 10^20 whole tokens of an
/// 18-decimal asset), so half of every 32-byte `U256` would be zeros. A larger amount is
/// stored as the sentinel `2^128 − 1` inline and found by binary search in the side
/// table, which is in push order and so in index order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmountColumn {
    low: Vec<u128>,
    /// (index, amount) of the amounts that do not fit inline, ascending index.
    wide: Vec<(usize, Amount)>,
}

impl AmountColumn {
    /// An empty column with room for `n` amounts inline.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            low: Vec::with_capacity(n),
            wide: Vec::new(),
        }
    }

    /// Appends `a`.
    pub fn push(&mut self, a: Amount) {
        match inline(a) {
            Some(v) => self.low.push(v),
            None => {
                self.wide.push((self.low.len(), a));
                self.low.push(WIDE);
            }
        }
    }

    /// The amount at `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn get(&self, i: usize) -> Amount {
        match self.low[i] {
            WIDE => {
                let k = self
                    .wide
                    .binary_search_by_key(&i, |w| w.0)
                    .expect("every sentinel has its side-table entry");
                self.wide[k].1
            }
            v => Amount::from_u128(v),
        }
    }

    /// Replaces the amount at `i` with `a`.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn set(&mut self, i: usize, a: Amount) {
        let at = self.wide.binary_search_by_key(&i, |w| w.0);
        match inline(a) {
            Some(v) => {
                self.low[i] = v;
                if let Ok(k) = at {
                    self.wide.remove(k);
                }
            }
            None => {
                self.low[i] = WIDE;
                match at {
                    Ok(k) => self.wide[k].1 = a,
                    Err(k) => self.wide.insert(k, (i, a)),
                }
            }
        }
    }

    /// Number of amounts.
    pub fn len(&self) -> usize {
        self.low.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.low.is_empty()
    }

    /// The amounts in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Amount> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Gives back the spare capacity.
    pub fn shrink_to_fit(&mut self) {
        self.low.shrink_to_fit();
        self.wide.shrink_to_fit();
    }
}

impl FromIterator<Amount> for AmountColumn {
    fn from_iter<I: IntoIterator<Item = Amount>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut c = Self::with_capacity(iter.size_hint().0);
        for a in iter {
            c.push(a);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_on_both_sides_of_the_inline_limit_come_back_exactly() {
        let edge = Amount::from_u128(u128::MAX); // the sentinel itself must go wide
        let below = Amount::from_u128(u128::MAX - 1);
        let above = edge.checked_add(Amount::from(1u64)).unwrap();
        let xs = [
            Amount::ZERO,
            edge,
            Amount::from(7u64),
            below,
            Amount::MAX,
            above,
            Amount::from(1u64),
        ];
        let c: AmountColumn = xs.iter().copied().collect();
        assert_eq!(c.len(), xs.len());
        assert_eq!(c.iter().collect::<Vec<_>>(), xs);
        assert_eq!(
            c.wide.len(),
            3,
            "u128::MAX, 2^256-1 and 2^128 go to the side table"
        );
        assert_eq!(c.get(3), below);

        // Replacing moves amounts between the inline column and the side table.
        let mut d = c.clone();
        d.set(1, Amount::from(5u64)); // wide -> inline
        d.set(0, Amount::MAX); // inline -> wide, before every other wide entry
        d.set(4, above); // wide -> wide
        d.set(6, edge); // inline -> wide, after the others
        let want = [
            Amount::MAX,
            Amount::from(5u64),
            xs[2],
            below,
            above,
            above,
            edge,
        ];
        assert_eq!(d.iter().collect::<Vec<_>>(), want);
        assert_eq!(d, want.iter().copied().collect::<AmountColumn>());
    }
}
