//! ERC-20 balance storage layouts: where `balanceOf(holder)` lives in a token's storage.
//!
//! Solidity mapping `m` at slot `p`: `m[k]` is at `keccak256(pad32(k) ++ pad32(p))`
//! (Solidity docs, "Layout of State Variables in Storage"). Vyper `HashMap` hashes in the
//! other order, `keccak256(pad32(p) ++ pad32(k))`. ERC-7201 namespaces put a struct at
//! `keccak256(keccak256(id) − 1) & ~0xff` (<https://eips.ethereum.org/EIPS/eip-7201>); its
//! first field is the balances mapping in OpenZeppelin v5 upgradeable `ERC20Upgradeable`.
//! A mask keeps the balance bits of a packed word (USDC v2.2 keeps a blacklist flag in
//! bit 255).

use crate::primitives::keccak::keccak256_many;
use crate::primitives::{keccak256, Address, B256, U256};
use serde::Deserialize;

/// Which order a mapping's slot hash takes its key and base slot in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingOrder {
    /// `keccak256(pad32(key) ++ pad32(base))`.
    #[default]
    Solidity,
    /// `keccak256(pad32(base) ++ pad32(key))`.
    Vyper,
}

/// Where an ERC-20's balances, allowances and total supply live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BalanceLayout {
    /// Base slot of the `balanceOf` mapping.
    pub base: B256,
    /// Hash order of the mapping.
    pub order: MappingOrder,
    /// Bits of the stored word that are the balance (all ones for a plain `uint256`).
    pub mask: U256,
    /// Slot of `totalSupply`, when it is a plain storage variable.
    pub total_supply: Option<B256>,
    /// Base slot of the `allowance[owner][spender]` mapping, when known.
    pub allowance: Option<B256>,
}

/// OpenZeppelin v5 upgradeable ERC-20 namespace id.
pub const OZ_V5_ERC20_NAMESPACE: &str = "openzeppelin.storage.ERC20";

/// Names accepted by [`BalanceLayout::preset`].
pub const PRESETS: &[&str] = &[
    "oz",
    "oz-v4",
    "oz-v5",
    "oz-v4-upgradeable",
    "oz-v5-upgradeable",
    "solmate",
    "weth9",
    "dai",
    "usdt",
    "usdc",
];

fn slot(n: u64) -> B256 {
    B256::from(U256::from(n))
}

impl BalanceLayout {
    /// A plain Solidity layout with `balanceOf` at `base` and no mask.
    pub fn solidity(base: B256) -> Self {
        Self {
            base,
            order: MappingOrder::Solidity,
            mask: U256::MAX,
            total_supply: None,
            allowance: None,
        }
    }

    /// A known token's layout by name (see [`PRESETS`]):
    ///
    /// | preset | balances | allowances | totalSupply | source |
    /// |---|---|---|---|---|
    /// | `oz`, `oz-v4`, `oz-v5` | 0 | 1 | 2 | OpenZeppelin `ERC20` 4.9 / 5.x storage layout |
    /// | `oz-v4-upgradeable` | 51 | 52 | 53 | `ERC20Upgradeable` 4.9 (`Initializable` + 50-slot gap first) |
    /// | `oz-v5-upgradeable` | ERC-7201 root | root + 1 | root + 2 | namespace `openzeppelin.storage.ERC20` |
    /// | `solmate` | 3 | 4 | 2 | solmate `ERC20` |
    /// | `weth9` | 3 | 4 | — | WETH9 (`totalSupply` is the ETH balance) |
    /// | `dai` | 2 | 3 | 1 | MakerDAO `dai.sol` |
    /// | `usdt` | 2 | — | 1 | TetherToken |
    /// | `usdc` | 9, mask `2^255 − 1` | — | — | Circle FiatToken v2.2 `balanceAndBlacklistStates` |
    pub fn preset(name: &str) -> Option<Self> {
        let s = |b: u64, a: Option<u64>, t: Option<u64>| Self {
            base: slot(b),
            order: MappingOrder::Solidity,
            mask: U256::MAX,
            total_supply: t.map(slot),
            allowance: a.map(slot),
        };
        Some(match name {
            "oz" | "oz-v4" | "oz-v5" => s(0, Some(1), Some(2)),
            "oz-v4-upgradeable" => s(51, Some(52), Some(53)),
            "oz-v5-upgradeable" => {
                let root = erc7201_root(OZ_V5_ERC20_NAMESPACE);
                let r = U256::from_be_bytes(root.0);
                Self {
                    base: root,
                    order: MappingOrder::Solidity,
                    mask: U256::MAX,
                    total_supply: Some(B256::from(r | U256::from(2))),
                    allowance: Some(B256::from(r | U256::from(1))),
                }
            }
            "solmate" => s(3, Some(4), Some(2)),
            "weth9" => s(3, Some(4), None),
            "dai" => s(2, Some(3), Some(1)),
            "usdt" => s(2, None, Some(1)),
            "usdc" => Self {
                mask: U256::MAX >> 1,
                ..s(9, None, None)
            },
            _ => return None,
        })
    }

    /// The slot of `balanceOf(holder)`.
    pub fn slot_of(&self, holder: Address) -> B256 {
        mapping_slot(self.order, holder.into_word(), self.base)
    }

    /// The slot of `allowance(owner, spender)` (nested mapping), when the layout has one.
    pub fn allowance_slot(&self, owner: Address, spender: Address) -> Option<B256> {
        let inner = mapping_slot(self.order, owner.into_word(), self.allowance?);
        Some(mapping_slot(self.order, spender.into_word(), inner))
    }

    /// The balance held in a stored word (the word with the mask applied).
    pub fn balance(&self, word: B256) -> U256 {
        U256::from_be_bytes(word.0) & self.mask
    }
}

/// The slot of `m[key]` for a mapping `m` at `base`, in the given hash order.
pub fn mapping_slot(order: MappingOrder, key: B256, base: B256) -> B256 {
    keccak256(mapping_preimage(order, key, base))
}

/// The 64 bytes hashed for `m[key]`: `pad32(key) ++ pad32(base)` (Solidity) or the
/// reverse (Vyper).
fn mapping_preimage(order: MappingOrder, key: B256, base: B256) -> [u8; 64] {
    let mut buf = [0u8; 64];
    let (first, second) = match order {
        MappingOrder::Solidity => (key, base),
        MappingOrder::Vyper => (base, key),
    };
    buf[..32].copy_from_slice(first.as_slice());
    buf[32..].copy_from_slice(second.as_slice());
    buf
}

/// [`mapping_slot`] of every holder address in `keys` (as `pad32(address)`), appended to
/// `out` in order, through [`crate::primitives::keccak::keccak256_many`] (eight at a time
/// with AVX-512F).
pub fn mapping_slots(order: MappingOrder, keys: &[Address], base: B256, out: &mut Vec<B256>) {
    let pre: Vec<[u8; 64]> = keys
        .iter()
        .map(|k| mapping_preimage(order, k.into_word(), base))
        .collect();
    keccak256_many(&pre, out);
}

/// ERC-7201 namespace root: `keccak256(keccak256(id) − 1) & ~0xff`.
pub fn erc7201_root(id: &str) -> B256 {
    let h = U256::from_be_bytes(keccak256(id.as_bytes()).0);
    // h − 1 cannot underflow unless the hash is zero, which keccak never yields in practice;
    // wrapping_sub keeps this total.
    let inner = h.wrapping_sub(U256::from(1u8));
    let r = U256::from_be_bytes(keccak256(inner.to_be_bytes::<32>()).0) & !U256::from(0xffu32);
    B256::from(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, b256};

    #[test]
    fn erc7201_root_matches_cast_index_erc7201() {
        // `cast index-erc7201 openzeppelin.storage.ERC20` (research/diff.md §3.1).
        assert_eq!(
            erc7201_root(OZ_V5_ERC20_NAMESPACE),
            b256!("52c63247e1f47db19d5ce0460030c497f067ca4cebf71ba98eeadabe20bace00")
        );
    }

    #[test]
    fn solidity_slot_matches_dai_slot_in_tenderly_fixture() {
        // DAI balanceOf[0xe58b…8ce1] (base 2) is slot 0x9b54…cd9e in the Tenderly fixture.
        let l = BalanceLayout::preset("dai").unwrap();
        assert_eq!(
            l.slot_of(address!("e58b9ee93700a616b50509c8292977fa7a0f8ce1")),
            b256!("9b5472766fd311751f6a33c8e30061e20a26259ca626cf5a2feaadf96903cd9e")
        );
    }

    #[test]
    fn vyper_order_differs_from_solidity() {
        let k = address!("e58b9ee93700a616b50509c8292977fa7a0f8ce1").into_word();
        let b = B256::from(U256::from(2));
        assert_ne!(
            mapping_slot(MappingOrder::Vyper, k, b),
            mapping_slot(MappingOrder::Solidity, k, b)
        );
        let mut buf = [0u8; 64];
        buf[..32].copy_from_slice(b.as_slice());
        buf[32..].copy_from_slice(k.as_slice());
        assert_eq!(mapping_slot(MappingOrder::Vyper, k, b), keccak256(buf));
    }

    #[test]
    fn batched_slots_equal_one_at_a_time_in_both_orders() {
        let keys: Vec<Address> = (0..21u64)
            .map(|i| Address::from_word(keccak256(i.to_be_bytes())))
            .collect();
        for order in [MappingOrder::Solidity, MappingOrder::Vyper] {
            for n in [0, 1, 8, 13, 21] {
                let b = B256::from(U256::from(51));
                let mut got = Vec::new();
                mapping_slots(order, &keys[..n], b, &mut got);
                let want: Vec<B256> = keys[..n]
                    .iter()
                    .map(|k| mapping_slot(order, k.into_word(), b))
                    .collect();
                assert_eq!(got, want, "{order:?}, {n} keys");
            }
        }
    }

    #[test]
    fn usdc_mask_drops_the_blacklist_bit() {
        let l = BalanceLayout::preset("usdc").unwrap();
        let w = B256::from((U256::from(1) << 255) | U256::from(1234));
        assert_eq!(l.balance(w), U256::from(1234));
    }

    #[test]
    fn every_preset_name_resolves() {
        for p in PRESETS {
            assert!(BalanceLayout::preset(p).is_some(), "{p}");
        }
        assert!(BalanceLayout::preset("oz-v6").is_none());
    }
}
