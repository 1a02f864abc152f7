//! Decoding a diff set with 1,000,000 changed balance slots across 3 tokens, side by side
//! with serde_json alone parsing the same files (into `serde_json::Value` and into alloy's
//! `DiffMode`). Run: `cargo bench --bench state_diff` (env `SLOTS` to change the size).
//!
//! The files are generated deterministically into a temporary directory: one
//! `debug_traceBlockByNumber`-shaped file per token (prestateTracer diffMode, 1,000
//! transactions each), tokens with three different layouts (OpenZeppelin base 0, DAI base 2,
//! solmate base 3) so no slot index is shared, and a holder list naming every holder.

use alloy_rpc_types_trace::geth::DiffMode;
use recoup::ingest::trace::{decode, StateDiffConfig};
use recoup::primitives::{keccak256, Address, B256, U256};
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

fn holder(i: u64) -> Address {
    Address::from_word(keccak256(i.to_be_bytes()))
}

fn main() {
    let slots: u64 = std::env::var("SLOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let tokens = [
        ("AAA", "oz", 0u64),
        ("BBB", "dai", 2),
        ("CCC", "solmate", 3),
    ];
    let per_token = slots.div_ceil(3);
    let txs_per_file = 1000u64;
    let mut holders =
        std::io::BufWriter::new(std::fs::File::create(dir.path().join("holders.txt")).unwrap());
    let mut files = Vec::new();
    let mut bytes = 0u64;
    for (t, (sym, preset, base)) in tokens.iter().enumerate() {
        let token = Address::from_word(keccak256(sym.as_bytes()));
        let layout = recoup::ingest::trace::BalanceLayout::preset(preset).unwrap();
        assert_eq!(layout.base, B256::from(U256::from(*base)));
        let mut s = String::with_capacity(per_token as usize * 300);
        s.push('[');
        let per_tx = per_token.div_ceil(txs_per_file);
        let mut i = 0u64;
        for tx in 0..txs_per_file {
            if tx > 0 {
                s.push(',');
            }
            let h = keccak256([t as u8, (tx >> 8) as u8, tx as u8]);
            write!(s, "{{\"txHash\":\"{h}\",\"result\":{{\"pre\":{{\"{token:#x}\":{{\"balance\":\"0x0\",\"nonce\":1,\"storage\":{{").unwrap();
            let mut pre = String::new();
            let mut post = String::new();
            let end = (i + per_tx).min(per_token);
            for k in i..end {
                let who = holder(t as u64 * per_token + k);
                writeln!(holders, "{who:#x}").unwrap();
                let slot = layout.slot_of(who);
                let from = U256::from(k + 1) * U256::from(1_000_000_007u64);
                let to = from + U256::from(k % 97 + 1);
                if k > i {
                    pre.push(',');
                    post.push(',');
                }
                write!(pre, "\"{slot}\":\"{}\"", B256::from(from)).unwrap();
                write!(post, "\"{slot}\":\"{}\"", B256::from(to)).unwrap();
            }
            i = end;
            write!(
                s,
                "{pre}}}}}}},\"post\":{{\"{token:#x}\":{{\"storage\":{{{post}}}}}}}}}}}"
            )
            .unwrap();
        }
        s.push(']');
        let name = format!("token{t}.json");
        std::fs::write(dir.path().join(&name), &s).unwrap();
        bytes += s.len() as u64;
        files.push((name, token, *sym, *preset));
    }
    holders.flush().unwrap();
    drop(holders);

    let mut manifest = format!(
        "chain_id = 1\ntraces = [{}]\nholders = \"holders.txt\"\n",
        files
            .iter()
            .map(|f| format!("{:?}", f.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (_, token, sym, preset) in &files {
        write!(
            manifest,
            "[[tokens]]\nasset = \"{sym}\"\naddress = \"{token:#x}\"\nlayout = \"{preset}\"\n"
        )
        .unwrap();
    }
    let cfg: StateDiffConfig = toml::from_str(&manifest).unwrap();

    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (mut t_value, mut t_typed, mut t_decode) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        // serde_json alone: read + parse every trace file into Value.
        let t0 = Instant::now();
        for (name, ..) in &files {
            let b = std::fs::read(dir.path().join(name)).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            std::hint::black_box(v);
        }
        t_value.push(t0.elapsed());
        // serde_json alone, typed: into alloy's DiffMode per transaction.
        let t0 = Instant::now();
        for (name, ..) in &files {
            #[derive(serde::Deserialize)]
            struct E {
                #[allow(dead_code)]
                #[serde(rename = "txHash")]
                tx_hash: B256,
                #[allow(dead_code)]
                result: DiffMode,
            }
            let b = std::fs::read(dir.path().join(name)).unwrap();
            let v: Vec<E> = serde_json::from_slice(&b).unwrap();
            std::hint::black_box(v);
        }
        t_typed.push(t0.elapsed());
        // recoup: read, parse, normalise, chain, hash 1M candidates per layout, match.
        let t0 = Instant::now();
        let s = decode(&cfg, dir.path()).unwrap();
        t_decode.push(t0.elapsed());
        assert_eq!(s.balance_changes.len() as u64, per_token * 3);
        assert!(s.unmatched.is_empty());
        std::hint::black_box(s);
    }
    let (v, t, d) = (median(t_value), median(t_typed), median(t_decode));
    println!("state_diff bench: {} changed balance slots, 3 tokens, {} files, {:.0} MB JSON, {} candidates, {} runs, {} rayon threads", per_token * 3, files.len(), bytes as f64 / 1e6, per_token * 3, runs, rayon::current_num_threads());
    println!(
        "  serde_json -> Value      median {:>8.3} s",
        v.as_secs_f64()
    );
    println!(
        "  serde_json -> DiffMode   median {:>8.3} s",
        t.as_secs_f64()
    );
    println!(
        "  recoup decode            median {:>8.3} s",
        d.as_secs_f64()
    );
    println!(
        "  ratio decode / Value     {:.2}",
        d.as_secs_f64() / v.as_secs_f64()
    );
    println!(
        "  ratio decode / DiffMode  {:.2}",
        d.as_secs_f64() / t.as_secs_f64()
    );
}
