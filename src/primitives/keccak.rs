//! Keccak-256 of many short messages at once: eight independent single-block hashes run
//! side by side, one message per 64-bit lane of a vector register.
//!
//! Storage-slot matching (millions of `keccak256(pad32(holder) ++ pad32(base))`) and
//! Merkle trees spend most of their time in Keccak-f\[1600\]. A scalar permutation cannot
//! use the vector units; eight permutations in lock step can: every step of a round is the
//! same operation on the same state word of all eight, so a state word of the eight fits
//! one 512-bit register (AVX-512).
//!
//! The permutation is written twice: with AVX-512F intrinsics, chosen at run time by CPU
//! feature detection, and portably over `[u64; 8]` lanes (the reference the tests hold the
//! AVX-512 one to). Without AVX-512F eight lanes are slower than alloy's scalar keccak, so
//! there the batch functions hash one message at a time with alloy's ([`lanes_pay`]).
//! Results are the same on every path; the tests compare each against alloy's `keccak256`
//! (the reference used everywhere else in recoup), on every CPU.
//!
//! Reference: FIPS 202 §3 (the step mappings θ, ρ, π, χ, ι) with Ethereum's original
//! Keccak padding (`0x01 … 0x80`, not SHA-3's `0x06`), rate 1088 bits (136 bytes).

use super::B256;

/// Messages of at most this many bytes fit one block (rate 136 bytes, one byte of padding).
pub const MAX_SINGLE_BLOCK: usize = 135;

/// Lanes hashed side by side.
pub const LANES: usize = 8;

/// Rate of Keccak-256 in 64-bit words.
const RATE_WORDS: usize = 17;

/// ι round constants (FIPS 202 §3.2.5).
const RC: [u64; 24] = [
    0x0000_0000_0000_0001,
    0x0000_0000_0000_8082,
    0x8000_0000_0000_808a,
    0x8000_0000_8000_8000,
    0x0000_0000_0000_808b,
    0x0000_0000_8000_0001,
    0x8000_0000_8000_8081,
    0x8000_0000_0000_8009,
    0x0000_0000_0000_008a,
    0x0000_0000_0000_0088,
    0x0000_0000_8000_8009,
    0x0000_0000_8000_000a,
    0x0000_0000_8000_808b,
    0x8000_0000_0000_008b,
    0x8000_0000_0000_8089,
    0x8000_0000_0000_8003,
    0x8000_0000_0000_8002,
    0x8000_0000_0000_0080,
    0x0000_0000_0000_800a,
    0x8000_0000_8000_000a,
    0x8000_0000_8000_8081,
    0x8000_0000_0000_8080,
    0x0000_0000_8000_0001,
    0x8000_0000_8000_8008,
];

/// One state word of the eight messages.
type Lane = [u64; LANES];
/// The 5×5 state (index `x + 5y`) of the eight messages.
type State = [Lane; 25];

#[inline(always)]
fn xor(a: Lane, b: Lane) -> Lane {
    std::array::from_fn(|i| a[i] ^ b[i])
}

#[inline(always)]
fn rotl<const N: u32>(a: Lane) -> Lane {
    std::array::from_fn(|i| a[i].rotate_left(N))
}

/// χ's `a ^ (!b & c)`.
#[inline(always)]
fn chi(a: Lane, b: Lane, c: Lane) -> Lane {
    std::array::from_fn(|i| a[i] ^ (!b[i] & c[i]))
}

/// ρ and π together: word `src` moves to `dst`, rotated left by `r` (FIPS 202 §3.2.2–3).
macro_rules! rho_pi {
    ($a:ident, $b:ident; $(($src:expr, $dst:expr, $r:expr)),* $(,)?) => {
        $( $b[$dst] = rotl::<$r>($a[$src]); )*
    };
}

/// Keccak-f\[1600\] on all eight states, 24 rounds. Written so that every step is an
/// element-wise operation on [`Lane`]s with constant rotation counts, which the compiler
/// turns into vector instructions where the target has them. With AVX-512F the
/// register-resident [`permute_avx512`] is used instead; this one is the reference the
/// tests hold it to, and the lanes of the tests on other CPUs.
#[inline(always)]
fn permute_portable(a: &mut State) {
    for rc in RC {
        // θ: C[x] = ⊕_y A[x, y]; A[x, y] ⊕= C[x − 1] ⊕ rot(C[x + 1], 1).
        let c: [Lane; 5] = std::array::from_fn(|x| {
            xor(
                xor(xor(a[x], a[x + 5]), xor(a[x + 10], a[x + 15])),
                a[x + 20],
            )
        });
        for x in 0..5 {
            let d = xor(c[(x + 4) % 5], rotl::<1>(c[(x + 1) % 5]));
            for y in 0..5 {
                a[x + 5 * y] = xor(a[x + 5 * y], d);
            }
        }
        // ρ and π: B[y, 2x + 3y] = rot(A[x, y], r[x, y]).
        let mut b: State = [[0; LANES]; 25];
        rho_pi!(a, b;
            (0, 0, 0), (1, 10, 1), (2, 20, 62), (3, 5, 28), (4, 15, 27),
            (5, 16, 36), (6, 1, 44), (7, 11, 6), (8, 21, 55), (9, 6, 20),
            (10, 7, 3), (11, 17, 10), (12, 2, 43), (13, 12, 25), (14, 22, 39),
            (15, 23, 41), (16, 8, 45), (17, 18, 15), (18, 3, 21), (19, 13, 8),
            (20, 14, 18), (21, 24, 2), (22, 9, 61), (23, 19, 56), (24, 4, 14),
        );
        // χ: A[x, y] = B[x, y] ⊕ (¬B[x + 1, y] ∧ B[x + 2, y]).
        for y in 0..5 {
            for x in 0..5 {
                a[x + 5 * y] = chi(b[x + 5 * y], b[(x + 1) % 5 + 5 * y], b[(x + 2) % 5 + 5 * y]);
            }
        }
        // ι
        a[0] = xor(a[0], [rc; LANES]);
    }
}

/// Keccak-f\[1600\] on eight states in AVX-512 registers: one `zmm` per state word, the
/// 25 words named (index `x + 5y`) so that they stay in registers through all 24 rounds;
/// θ's five-way XORs and χ are `vpternlogq`, the rotations `vprolq`. Same steps as
/// [`permute_portable`], which the tests compare it against.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)]
fn permute_avx512(state: &mut State) {
    use std::arch::x86_64::{
        __m512i, _mm512_rol_epi64 as rol, _mm512_set1_epi64, _mm512_ternarylogic_epi64 as tern,
        _mm512_xor_si512 as xor2,
    };
    // SAFETY: `State` ([[u64; 8]; 25]) and [__m512i; 25] are both 1600 bytes of plain
    // integers: every bit pattern is valid for each, so the transmutes only reinterpret.
    let v: [__m512i; 25] = unsafe { std::mem::transmute::<State, [__m512i; 25]>(*state) };
    let [mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7, mut a8, mut a9, mut a10, mut a11, mut a12, mut a13, mut a14, mut a15, mut a16, mut a17, mut a18, mut a19, mut a20, mut a21, mut a22, mut a23, mut a24] =
        v;
    for rc in RC {
        // θ: C[x] = ⊕_y A[x, y] (0x96: three-way XOR); D[x] = C[x − 1] ⊕ rot(C[x + 1], 1).
        let c0 = tern::<0x96>(tern::<0x96>(a0, a5, a10), a15, a20);
        let c1 = tern::<0x96>(tern::<0x96>(a1, a6, a11), a16, a21);
        let c2 = tern::<0x96>(tern::<0x96>(a2, a7, a12), a17, a22);
        let c3 = tern::<0x96>(tern::<0x96>(a3, a8, a13), a18, a23);
        let c4 = tern::<0x96>(tern::<0x96>(a4, a9, a14), a19, a24);
        let d0 = xor2(c4, rol::<1>(c1));
        let d1 = xor2(c0, rol::<1>(c2));
        let d2 = xor2(c1, rol::<1>(c3));
        let d3 = xor2(c2, rol::<1>(c4));
        let d4 = xor2(c3, rol::<1>(c0));
        // ρ and π: B[y, 2x + 3y] = rot(A[x, y] ⊕ D[x], r[x, y]).
        let b0 = xor2(a0, d0);
        let b1 = rol::<44>(xor2(a6, d1));
        let b2 = rol::<43>(xor2(a12, d2));
        let b3 = rol::<21>(xor2(a18, d3));
        let b4 = rol::<14>(xor2(a24, d4));
        let b5 = rol::<28>(xor2(a3, d3));
        let b6 = rol::<20>(xor2(a9, d4));
        let b7 = rol::<3>(xor2(a10, d0));
        let b8 = rol::<45>(xor2(a16, d1));
        let b9 = rol::<61>(xor2(a22, d2));
        let b10 = rol::<1>(xor2(a1, d1));
        let b11 = rol::<6>(xor2(a7, d2));
        let b12 = rol::<25>(xor2(a13, d3));
        let b13 = rol::<8>(xor2(a19, d4));
        let b14 = rol::<18>(xor2(a20, d0));
        let b15 = rol::<27>(xor2(a4, d4));
        let b16 = rol::<36>(xor2(a5, d0));
        let b17 = rol::<10>(xor2(a11, d1));
        let b18 = rol::<15>(xor2(a17, d2));
        let b19 = rol::<56>(xor2(a23, d3));
        let b20 = rol::<62>(xor2(a2, d2));
        let b21 = rol::<55>(xor2(a8, d3));
        let b22 = rol::<39>(xor2(a14, d4));
        let b23 = rol::<41>(xor2(a15, d0));
        let b24 = rol::<2>(xor2(a21, d1));
        // χ: A[x, y] = B[x, y] ⊕ (¬B[x + 1, y] ∧ B[x + 2, y]) (0xD2); ι on word 0.
        a0 = tern::<0xD2>(b0, b1, b2);
        a1 = tern::<0xD2>(b1, b2, b3);
        a2 = tern::<0xD2>(b2, b3, b4);
        a3 = tern::<0xD2>(b3, b4, b0);
        a4 = tern::<0xD2>(b4, b0, b1);
        a5 = tern::<0xD2>(b5, b6, b7);
        a6 = tern::<0xD2>(b6, b7, b8);
        a7 = tern::<0xD2>(b7, b8, b9);
        a8 = tern::<0xD2>(b8, b9, b5);
        a9 = tern::<0xD2>(b9, b5, b6);
        a10 = tern::<0xD2>(b10, b11, b12);
        a11 = tern::<0xD2>(b11, b12, b13);
        a12 = tern::<0xD2>(b12, b13, b14);
        a13 = tern::<0xD2>(b13, b14, b10);
        a14 = tern::<0xD2>(b14, b10, b11);
        a15 = tern::<0xD2>(b15, b16, b17);
        a16 = tern::<0xD2>(b16, b17, b18);
        a17 = tern::<0xD2>(b17, b18, b19);
        a18 = tern::<0xD2>(b18, b19, b15);
        a19 = tern::<0xD2>(b19, b15, b16);
        a20 = tern::<0xD2>(b20, b21, b22);
        a21 = tern::<0xD2>(b21, b22, b23);
        a22 = tern::<0xD2>(b22, b23, b24);
        a23 = tern::<0xD2>(b23, b24, b20);
        a24 = tern::<0xD2>(b24, b20, b21);
        a0 = xor2(a0, _mm512_set1_epi64(rc as i64));
    }
    let v = [
        a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19,
        a20, a21, a22, a23, a24,
    ];
    // SAFETY: as above.
    *state = unsafe { std::mem::transmute::<[__m512i; 25], State>(v) };
}

/// Keccak-f\[1600\] on eight states, on the widest vector unit this CPU has.
#[allow(unsafe_code)]
fn permute(a: &mut State) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above), the only requirement of
            // `permute_avx512`, which is otherwise safe code.
            return unsafe { permute_avx512(a) };
        }
    }
    permute_portable(a)
}

/// True when hashing eight messages in lock step beats alloy's scalar keccak256 one message
/// at a time on this CPU: only where AVX-512F holds a state word of all eight in one
/// register. Measured with `cargo bench --bench primitives` (64-byte messages, one
/// thread): with AVX-512F, 82.7 ns a hash against alloy's 384.2 ns; on an EPYC with AVX2
/// only, eight lanes in pairs of 256-bit registers took 986 ns against alloy's 578 ns (the
/// 25-word state in 50 registers spills), so there every batch function below hashes one
/// message at a time with alloy's.
pub fn lanes_pay() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `keccak256` of eight messages of `N` bytes each (`N` ≤ [`MAX_SINGLE_BLOCK`], checked at
/// compile time), equal to `[keccak256(msgs[0]), …, keccak256(msgs[7])]`: in lock step
/// where [`lanes_pay`], one at a time with alloy's elsewhere.
pub fn keccak256_x8<const N: usize>(msgs: [&[u8; N]; LANES]) -> [B256; LANES] {
    if lanes_pay() {
        x8_lanes(msgs)
    } else {
        msgs.map(alloy_primitives::keccak256)
    }
}

/// [`keccak256_x8`] through the eight-lane permutation, whatever the CPU.
fn x8_lanes<const N: usize>(msgs: [&[u8; N]; LANES]) -> [B256; LANES] {
    const {
        assert!(
            N <= MAX_SINGLE_BLOCK,
            "message longer than one Keccak-256 block"
        )
    };
    // Absorb: word `w` of each padded block (message, 0x01, zeros, 0x80 in the rate's
    // last byte), little-endian. `N` is a constant, so the padding folds away.
    let mut s: State = [[0; LANES]; 25];
    for (w, word) in s.iter_mut().take(RATE_WORDS).enumerate() {
        for (l, m) in msgs.iter().enumerate() {
            let mut b = [0u8; 8];
            for (k, byte) in b.iter_mut().enumerate() {
                let i = w * 8 + k;
                if i < N {
                    *byte = m[i];
                }
                if i == N {
                    *byte ^= 0x01;
                }
                if i == RATE_WORDS * 8 - 1 {
                    *byte ^= 0x80;
                }
            }
            word[l] = u64::from_le_bytes(b);
        }
    }
    permute_and_squeeze(s)
}

/// Permutes eight absorbed states and reads each one's digest: its first four words,
/// little-endian.
fn permute_and_squeeze(mut s: State) -> [B256; LANES] {
    permute(&mut s);
    std::array::from_fn(|l| {
        let mut out = [0u8; 32];
        for (w, chunk) in out.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&s[w][l].to_le_bytes());
        }
        B256::from(out)
    })
}

/// `keccak256` of each message in `msgs`, appended to `out` in order. Messages of at most
/// [`MAX_SINGLE_BLOCK`] bytes (lengths may differ) are hashed eight at a time where
/// [`lanes_pay`]; longer ones, and all of them elsewhere, go through alloy's `keccak256`
/// one by one. For leaf encodings whose length is only
/// known at run time (OpenZeppelin `abi.encode` of a manifest's leaf types).
pub fn keccak256_slices(msgs: &[&[u8]], out: &mut Vec<B256>) {
    if lanes_pay() {
        slices_lanes(msgs, out);
    } else {
        out.extend(msgs.iter().map(alloy_primitives::keccak256));
    }
}

/// [`keccak256_slices`] through the eight-lane permutation, whatever the CPU.
fn slices_lanes(msgs: &[&[u8]], out: &mut Vec<B256>) {
    out.reserve(msgs.len());
    for group in msgs.chunks(LANES) {
        if group.len() < LANES || group.iter().any(|m| m.len() > MAX_SINGLE_BLOCK) {
            out.extend(group.iter().map(alloy_primitives::keccak256));
            continue;
        }
        let mut blocks = [[0u8; RATE_WORDS * 8]; LANES];
        for (b, m) in blocks.iter_mut().zip(group) {
            b[..m.len()].copy_from_slice(m);
            b[m.len()] ^= 0x01;
            b[RATE_WORDS * 8 - 1] ^= 0x80;
        }
        let mut s: State = [[0; LANES]; 25];
        for (w, word) in s.iter_mut().take(RATE_WORDS).enumerate() {
            for (l, b) in blocks.iter().enumerate() {
                let mut x = [0u8; 8];
                x.copy_from_slice(&b[w * 8..w * 8 + 8]);
                word[l] = u64::from_le_bytes(x);
            }
        }
        out.extend(permute_and_squeeze(s));
    }
}

/// `keccak256` of every message in `msgs` (each `N` ≤ [`MAX_SINGLE_BLOCK`] bytes), in
/// order: eight at a time where [`lanes_pay`] (a last partial group is padded with copies
/// of its first message and the extra results dropped), one at a time with alloy's
/// elsewhere.
pub fn keccak256_many<const N: usize>(msgs: &[[u8; N]], out: &mut Vec<B256>) {
    if lanes_pay() {
        keccak256_many_lanes(msgs, out);
    } else {
        out.extend(msgs.iter().map(alloy_primitives::keccak256));
    }
}

/// [`keccak256_many`] through the eight-lane permutation whatever the CPU (the portable
/// build without AVX-512F): for the benchmark that measures the choice [`lanes_pay`] makes.
pub fn keccak256_many_lanes<const N: usize>(msgs: &[[u8; N]], out: &mut Vec<B256>) {
    out.reserve(msgs.len());
    for group in msgs.chunks(LANES) {
        let h = x8_lanes::<N>(std::array::from_fn(|i| group.get(i).unwrap_or(&group[0])));
        out.extend_from_slice(&h[..group.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;

    fn msgs<const N: usize>(seed: u64, count: usize) -> Vec<[u8; N]> {
        (0..count as u64)
            .map(|i| {
                let h = keccak256((seed * 1_000_003 + i).to_le_bytes());
                std::array::from_fn(|j| h[j % 32] ^ (j as u8).wrapping_mul(29))
            })
            .collect()
    }

    fn check<const N: usize>() {
        for count in [0, 1, 7, 8, 9, 17, 1000] {
            let m = msgs::<N>(N as u64, count);
            let want: Vec<B256> = m.iter().map(keccak256).collect();
            // The eight-lane path on every CPU (portable where AVX-512F is missing), and
            // the dispatched one.
            let mut got = Vec::new();
            keccak256_many_lanes(&m, &mut got);
            assert_eq!(got, want, "lanes, N = {N}, count = {count}");
            got.clear();
            keccak256_many(&m, &mut got);
            assert_eq!(got, want, "dispatched, N = {N}, count = {count}");
        }
    }

    #[test]
    fn equals_alloy_keccak256_for_every_single_block_length() {
        check::<0>();
        check::<1>();
        check::<20>();
        check::<31>();
        check::<32>();
        check::<33>();
        check::<52>();
        check::<64>();
        check::<84>();
        check::<96>();
        check::<127>();
        check::<128>();
        check::<134>();
        check::<135>();
    }

    /// Every compiled path (portable, and AVX-512 where this CPU has it) gives
    /// the same states as the portable one, over several rounds of chained permutations.
    #[test]
    #[allow(unsafe_code)]
    fn every_path_equals_the_portable_one() {
        let m = msgs::<64>(7, 8);
        let mut start: State = [[0; LANES]; 25];
        for (l, x) in m.iter().enumerate() {
            for w in 0..8 {
                start[w][l] = u64::from_le_bytes(x[w * 8..w * 8 + 8].try_into().unwrap());
            }
        }
        let mut want = start;
        let mut dispatched = start;
        for _ in 0..5 {
            permute_portable(&mut want);
            permute(&mut dispatched);
        }
        assert_eq!(dispatched, want);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut s = start;
                for _ in 0..5 {
                    // SAFETY: AVX-512F checked just above.
                    unsafe { permute_avx512(&mut s) };
                }
                assert_eq!(s, want, "AVX-512 path");
            }
        }
    }

    #[test]
    fn slices_of_mixed_lengths_equal_alloy_keccak256() {
        // Lengths 0..=140 mixed within groups of eight, including over one block.
        let data: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        let msgs: Vec<&[u8]> = (0..=140usize).map(|n| &data[n % 7..n % 7 + n]).collect();
        for take in [0, 5, 8, 64, 100, msgs.len()] {
            let want: Vec<B256> = msgs[..take].iter().map(keccak256).collect();
            let mut got = Vec::new();
            slices_lanes(&msgs[..take], &mut got);
            assert_eq!(got, want, "lanes, {take} messages");
            got.clear();
            keccak256_slices(&msgs[..take], &mut got);
            assert_eq!(got, want, "dispatched, {take} messages");
        }
    }

    #[test]
    fn known_answer_empty_message() {
        // Keccak-256("") as published with the Keccak reference (and used by Ethereum as
        // the hash of empty code).
        let want: B256 = "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
            .parse()
            .unwrap();
        assert_eq!(x8_lanes::<0>([&[]; 8]), [want; 8]);
        assert_eq!(keccak256_x8::<0>([&[]; 8]), [want; 8]);
    }
}
