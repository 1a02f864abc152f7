//! Governance-capture simulation: closed forms, degenerate cases, determinism, history, errors.
//!
//! Closed forms are computed here, independently of the engine (statrs binomial tail, the
//! beta-binomial sum through `ln_beta`, the Beta(2, b) CDF in closed form), and the research
//! notes' published values (`shared/research/gov.md` §3.4) pin those closed forms in turn.

use recoup::sim::{self, ChannelKind, LoadedModel, SimError, SimOptions, SimReport, SweepSpec};
use rust_decimal::Decimal;
use statrs::distribution::{Binomial, DiscreteCDF};
use statrs::function::beta::ln_beta;
use std::path::{Path, PathBuf};

const Z99: f64 = 2.575_829_303_548_901;

fn wilson99(k: u64, n: u64) -> (f64, f64) {
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z99 * Z99;
    let d = 1.0 + z2 / n;
    let c = (p + z2 / (2.0 * n)) / d;
    let h = Z99 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / d;
    (c - h, c + h)
}

fn model(src: &str) -> LoadedModel {
    LoadedModel::from_str(src, Path::new("inline.toml")).expect("model parses")
}

fn run(m: &LoadedModel, trials: u64, seed: u64) -> SimReport {
    let opts = SimOptions {
        trials,
        seed,
        sweeps: Vec::new(),
        sweep_trials: None,
    };
    sim::simulate(m, &opts, None).expect("simulation runs")
}

fn assert_in_99(r: &SimReport, expected: f64, what: &str) {
    let (lo, hi) = wilson99(r.p_capture.count, r.p_capture.trials);
    assert!(
        lo <= expected && expected <= hi,
        "{what}: closed form {expected:.6e} outside the simulation's 99% interval [{lo:.6e}, {hi:.6e}] ({} of {})",
        r.p_capture.count,
        r.p_capture.trials
    );
}

/// A multisig over `h` days where one key is compromised within the horizon with `pi`.
fn multisig_model(n: u32, m: u32, pi: f64, rho: f64, h: u32) -> LoadedModel {
    let p_day = 1.0 - (1.0 - pi).powf(1.0 / h as f64);
    model(&format!(
        "name = \"t\"\nhorizon_days = {h}\n[value_at_risk]\ntreasury_usd = 1000\n\
         [multisig.k]\nsigners = {n}\nthreshold = {m}\nkey_compromise_per_day = {p_day}\n\
         signer_correlation = {rho}\n"
    ))
}

fn binomial_tail(n: u64, m: u64, p: f64) -> f64 {
    Binomial::new(p, n).unwrap().sf(m - 1)
}

fn beta_binomial_tail(n: u64, m: u64, p: f64, rho: f64) -> f64 {
    let t = 1.0 / rho - 1.0;
    let (a, b) = (p * t, (1.0 - p) * t);
    let ln_choose = |n: u64, k: u64| statrs::function::factorial::ln_binomial(n, k);
    (m..=n)
        .map(|k| {
            (ln_choose(n, k) + ln_beta(k as f64 + a, (n - k) as f64 + b) - ln_beta(a, b)).exp()
        })
        .sum()
}

#[test]
fn closed_forms_reproduce_the_research_table() {
    // gov.md §3.4, four significant digits.
    let rel = |got: f64, want: f64| ((got - want) / want).abs() < 5e-4;
    assert!(rel(binomial_tail(5, 2, 0.05), 2.259e-2));
    assert!(rel(binomial_tail(11, 3, 0.05), 1.524e-2));
    assert!(rel(binomial_tail(9, 5, 0.05), 3.322e-5));
    assert!(rel(beta_binomial_tail(5, 2, 0.05, 0.1), 4.653e-2));
    assert!(rel(beta_binomial_tail(11, 3, 0.05, 0.1), 5.858e-2));
    assert!(rel(beta_binomial_tail(9, 5, 0.05, 0.3), 2.477e-2));
    assert!(rel(beta_binomial_tail(8, 6, 0.05, 0.1), 7.154e-4));
}

#[test]
fn independent_signers_match_the_binomial_tail() {
    for (n, m, trials) in [
        (5u32, 2u32, 200_000u64),
        (11, 3, 200_000),
        (9, 5, 2_000_000),
    ] {
        let r = run(&multisig_model(n, m, 0.05, 0.0, 100), trials, 7);
        assert_in_99(
            &r,
            binomial_tail(n as u64, m as u64, 0.05),
            &format!("{m}-of-{n}"),
        );
        // The chain's exact absorption agrees with the binomial tail too.
        let exact = r
            .exact_p_capture
            .expect("independent signers have an exact value");
        let want = binomial_tail(n as u64, m as u64, 0.05);
        assert!(
            (exact - want).abs() < 1e-9 * want.max(1e-9) + 1e-12,
            "{exact} vs {want}"
        );
    }
}

#[test]
fn correlated_signers_match_the_beta_binomial_tail() {
    for (n, m, rho) in [(9u32, 5u32, 0.3), (11, 3, 0.1), (5, 2, 0.1), (8, 6, 0.3)] {
        let r = run(&multisig_model(n, m, 0.05, rho, 100), 200_000, 11);
        let want = beta_binomial_tail(n as u64, m as u64, 0.05, rho);
        assert_in_99(&r, want, &format!("{m}-of-{n} rho {rho}"));
        // And correlation matters: far above the independent tail.
        assert!(r.p_capture.p > 2.0 * binomial_tail(n as u64, m as u64, 0.05));
    }
}

#[test]
fn single_vote_matches_the_beta_2_38_cdf() {
    // gov.md §3.4: P(T < a) for T ~ Beta(2, 38); closed form 1 − (1 − a)^38 (1 + 38a).
    for (a, table) in [
        (0.02, 0.1832),
        (0.04, 0.4658),
        (0.05, 0.5871),
        (0.08, 0.8301),
    ] {
        let closed: f64 = 1.0 - (1.0f64 - a).powi(38) * (1.0 + 38.0 * a);
        assert!(
            (closed - table).abs() < 5e-5,
            "closed form {closed} vs table {table}"
        );
        let m = model(&format!(
            "name = \"vote\"\nhorizon_days = 10\n[value_at_risk]\ntreasury_usd = 1\n\
             [token_vote.v]\nsupply = 1e9\nprice_usd = 1\nattacker_initial_share = {a}\n\
             quorum = 0.0\nhonest_turnout_beta = [2.0, 38.0]\nproposal_every_days = 7\n"
        ));
        let r = run(&m, 100_000, 3);
        assert_in_99(&r, closed, &format!("vote with share {a}"));
        assert_eq!(r.channels[0].kind, ChannelKind::TokenVote);
        // One proposal (day 7) in 10 days: every capture on day 7.
        assert_eq!(r.time_to_capture.histogram[6], r.p_capture.count);
    }
}

#[test]
fn no_budget_and_no_key_risk_never_captures() {
    let m = model(
        r#"
name = "idle"
horizon_days = 365
[value_at_risk]
treasury_usd = 1_000_000
[token_vote.v]
supply = 1e9
price_usd = 1
quorum = 0.04
honest_turnout_beta = [2.0, 38.0]
proposal_every_days = 7
[multisig.m]
signers = 5
threshold = 3
key_compromise_per_day = 0.0
common_shock_per_day = 0.0
[admin_key.a]
compromise_per_day = 0.0
"#,
    );
    let r = run(&m, 50_000, 1);
    assert_eq!(r.p_capture.count, 0);
    assert_eq!(r.exact_p_capture, Some(0.0));
    assert_eq!(r.loss.expected_usd, Decimal::ZERO);
    assert_eq!(r.loss.es99_usd, Decimal::ZERO);
}

#[test]
fn timelock_beyond_the_horizon_with_a_certain_veto_never_captures() {
    let m = model(
        r#"
name = "locked"
horizon_days = 365
[value_at_risk]
treasury_usd = 1_000_000
[token_vote.v]
supply = 1e9
price_usd = 1
attacker_initial_share = 0.9
quorum = 0.04
honest_turnout_beta = [2.0, 38.0]
proposal_every_days = 1
timelock_days = 400
guardian_veto = 1.0
[admin_key.a]
compromise_per_day = 1.0
timelock_days = 400
guardian_veto = 1.0
"#,
    );
    let r = run(&m, 50_000, 1);
    assert_eq!(r.p_capture.count, 0);
    // The timelock alone already keeps execution past the horizon; so does the veto alone.
    let veto_only = m.with_param("token_vote.v.timelock_days", 0.0).unwrap();
    let veto_only = veto_only
        .with_param("admin_key.a.timelock_days", 0.0)
        .unwrap();
    assert_eq!(run(&veto_only, 50_000, 1).p_capture.count, 0);
}

#[test]
fn flash_loanable_governor_captures_at_the_first_proposal() {
    let m = LoadedModel::from_file(Path::new("models/governance/flash_loanable_governor.toml"))
        .unwrap();
    let r = run(&m, 50_000, 5);
    assert_eq!(r.p_capture.count, 50_000);
    // First proposal on day 1, committed after the 1-day vote: every capture on day 2.
    assert_eq!(r.time_to_capture.histogram[1], 50_000);
    assert_eq!(r.time_to_capture.median_days, Some(2.0));
    // Cost of corruption is the flash-loan fee, far below what the capture takes.
    assert_eq!(r.corruption.robust, Some(false));
    // The same governor with a snapshot before the vote: flash-loaned votes count for nothing.
    let snap = m.table.clone();
    let mut snap = snap;
    snap["token_vote"]["live_balance"]
        .as_table_mut()
        .unwrap()
        .insert("snapshot".into(), toml::Value::Boolean(true));
    let snap_src = toml::to_string(&snap).unwrap();
    let r = run(&model(&snap_src), 50_000, 5);
    assert_eq!(r.p_capture.count, 0);
}

#[test]
fn same_seed_gives_byte_identical_reports_on_1_and_2_threads() {
    let m = LoadedModel::from_file(Path::new("models/governance/radcad_reference.toml")).unwrap();
    let opts = SimOptions {
        trials: 123_457,
        seed: 42,
        sweeps: vec![SweepSpec::parse("multisig.bridge.common_shock_per_day=0..0.01").unwrap()],
        sweep_trials: Some(20_001),
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| sim::simulate(&m, &opts, None))
        .unwrap();
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
        .install(|| sim::simulate(&m, &opts, None))
        .unwrap();
    let (a, b) = (
        serde_json::to_string(&one).unwrap(),
        serde_json::to_string(&two).unwrap(),
    );
    assert_eq!(a, b);
    assert_eq!(sim::to_markdown(&one), sim::to_markdown(&two));
    // A different seed gives a different sample.
    let other = sim::simulate(&m, &SimOptions { seed: 43, ..opts }, None).unwrap();
    assert_ne!(other.p_capture.count, one.p_capture.count);
    assert_ne!(other.model_hash, one.model_hash);
}

#[test]
fn reference_model_falls_in_radcads_interval() {
    // radCAD 0.14.0 on radcad_reference.py: 4312 captures of 10,000 (bench/README.md).
    let (lo, hi) = wilson99(4312, 10_000);
    let m = LoadedModel::from_file(Path::new("models/governance/radcad_reference.toml")).unwrap();
    let r = run(&m, 10_000, 1);
    assert!(
        lo <= r.p_capture.p && r.p_capture.p <= hi,
        "{} not in [{lo}, {hi}]",
        r.p_capture.p
    );
    let exact = r.exact_p_capture.unwrap();
    assert!(
        lo <= exact && exact <= hi,
        "exact {exact} not in [{lo}, {hi}]"
    );
    assert_in_99(
        &run(&m, 1_000_000, 2),
        exact,
        "reference model, 1M trials vs exact",
    );
}

#[derive(Debug, serde::Deserialize)]
struct AttackRow {
    name: String,
    date: String,
    mechanism: String,
    loss_usd: Decimal,
}

#[test]
fn historical_incidents_show_the_capture_history_showed() {
    let rows: Vec<AttackRow> = csv::Reader::from_path("../shared/data/governance/attacks.csv")
        .expect("attacks.csv (shared data beside the checkout)")
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir("models/governance/history").unwrap() {
        let path = entry.unwrap().path();
        let m = LoadedModel::from_file(&path).unwrap();
        let h = m
            .model
            .history
            .clone()
            .expect("historical model has [history]");
        let row = rows
            .iter()
            .find(|r| r.name == h.incident)
            .unwrap_or_else(|| panic!("{}: no attacks.csv row {:?}", path.display(), h.incident));
        assert_eq!(
            (row.date.as_str(), row.mechanism.as_str()),
            (h.date.as_str(), h.mechanism.as_str())
        );
        assert_eq!(row.loss_usd, h.loss_usd);
        let r = run(&m, 20_000, 9);
        let (lo, _) = wilson99(r.p_capture.count, r.p_capture.trials);
        assert!(
            lo > 0.9,
            "{}: P(capture) {} — history showed a capture",
            path.display(),
            r.p_capture.p
        );
        // The channel credited with the captures is the incident's mechanism.
        let top = r.channels.iter().max_by_key(|c| c.p_first.count).unwrap();
        let want = match h.mechanism.as_str() {
            "flash_loan_vote" | "token_vote" => ChannelKind::TokenVote,
            "multisig_keys" => ChannelKind::Multisig,
            _ => ChannelKind::AdminKey,
        };
        assert_eq!(top.kind, want, "{}", path.display());
        // The loss on capture is the incident's loss.
        assert_eq!(r.loss.max_usd, row.loss_usd, "{}", path.display());
        assert_eq!(r.loss.var99_usd, row.loss_usd, "{}", path.display());
        seen.push(h.incident);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "Beanstalk Farms",
            "Harmony Horizon Bridge",
            "Radiant Capital",
            "Ronin Bridge (Axie Infinity)"
        ]
    );
}

#[test]
fn every_preset_loads_and_its_sweeps_run() {
    let mut n = 0;
    for entry in std::fs::read_dir("models/governance").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let m = LoadedModel::from_file(&path).unwrap();
            let opts = SimOptions {
                trials: 2_000,
                seed: 1,
                sweeps: Vec::new(),
                sweep_trials: Some(1_000),
            };
            let r = sim::simulate(&m, &opts, None).unwrap();
            assert_eq!(
                r.sensitivity.len(),
                m.model.sweep.len(),
                "{}",
                path.display()
            );
            n += 1;
        }
    }
    assert_eq!(n, 7, "the seven presets");
}

#[test]
fn tornado_moves_the_way_the_parameter_does() {
    let m = LoadedModel::from_file(Path::new("models/governance/radcad_reference.toml")).unwrap();
    let opts = SimOptions {
        trials: 20_000,
        seed: 1,
        sweeps: vec![
            SweepSpec::parse("token_vote.dao.guardian_veto=0..1").unwrap(),
            SweepSpec::parse("multisig.bridge.common_shock_per_day=0..0.01").unwrap(),
        ],
        sweep_trials: None,
    };
    let r = sim::simulate(&m, &opts, None).unwrap();
    let veto = r
        .sensitivity
        .iter()
        .find(|s| s.param.ends_with("guardian_veto"))
        .unwrap();
    assert!(veto.p_lo > 0.6 && veto.p_hi < 0.05, "{veto:?}");
    let shock = r
        .sensitivity
        .iter()
        .find(|s| s.param.ends_with("common_shock_per_day"))
        .unwrap();
    assert!(shock.p_hi > shock.p_lo);
    // Largest swing first.
    assert!(r.sensitivity[0].swing >= r.sensitivity[1].swing);
    // Convergence: the interval narrows with trials.
    let c = &r.convergence;
    assert_eq!(c.last().unwrap().trials, 20_000);
    assert!(c.windows(2).all(|w| w[1].half_width99 < w[0].half_width99));
}

fn err_of(src: &str) -> String {
    LoadedModel::from_str(src, Path::new("bad.toml"))
        .unwrap_err()
        .to_string()
}

const GOOD_HEAD: &str = "name = \"x\"\nhorizon_days = 10\n[value_at_risk]\ntreasury_usd = 1\n";

#[test]
fn bad_models_name_the_file_and_key() {
    let e = err_of(&format!(
        "{GOOD_HEAD}[multisig.m]\nsigners = 5\nthreshold = 3\nkey_compromise_per_day = -0.1\n"
    ));
    assert!(
        e.contains("bad.toml") && e.contains("multisig.m.key_compromise_per_day"),
        "{e}"
    );

    let e = err_of(&format!(
        "{GOOD_HEAD}[multisig.m]\nsigners = 5\nthreshold = 6\nkey_compromise_per_day = 0.1\n"
    ));
    assert!(
        e.contains("multisig.m.threshold") && e.contains("M > N"),
        "{e}"
    );

    let e = err_of(&format!(
        "{GOOD_HEAD}[admin_key.a]\ncompromise_per_day = 0.01\nguardian_veto = 1.5\n"
    ));
    assert!(
        e.contains("admin_key.a.guardian_veto") && e.contains("1.5"),
        "{e}"
    );

    let e = err_of(&format!("{GOOD_HEAD}[oracle.o]\nrate = 0.1\n"));
    assert!(
        e.contains("bad.toml") && e.contains("oracle") && e.contains("unknown field"),
        "{e}"
    );

    let e = err_of(&format!(
        "{GOOD_HEAD}[multisig.m]\nsigners = 5\nthreshold = 3\nkey_compromise_per_day = 0.1\nrotaton_per_day = 0.1\n"
    ));
    assert!(
        e.contains("multisig.m.rotaton_per_day") && e.contains(":9:"),
        "{e}"
    );

    let e = err_of(&format!(
        "{GOOD_HEAD}[multisig.m]\nsigners = \"nine\"\nthreshold = 3\nkey_compromise_per_day = 0.1\n"
    ));
    assert!(e.contains("multisig.m.signers") && e.contains(":6:"), "{e}");

    let e = err_of("name = \"x\"\nhorizon_days = -5\n[value_at_risk]\ntreasury_usd = 1\n");
    assert!(e.contains("horizon_days"), "{e}");
}

#[test]
fn sweep_over_a_missing_parameter_names_it() {
    let m = LoadedModel::from_file(Path::new("models/governance/radcad_reference.toml")).unwrap();
    for bad in [
        "token_vote.dao.quorom",
        "token_vote.nope.quorum",
        "multisig.bridge.signers.x",
    ] {
        let opts = SimOptions {
            trials: 10,
            seed: 1,
            sweeps: vec![SweepSpec::parse(&format!("{bad}=0..1")).unwrap()],
            sweep_trials: None,
        };
        let e = sim::simulate(&m, &opts, None).unwrap_err();
        assert!(matches!(e, SimError::UnknownParam { .. }), "{bad}: {e}");
        assert!(
            e.to_string().contains(bad) && e.to_string().contains("radcad_reference.toml"),
            "{e}"
        );
    }
    // A sweep to an invalid value names the key too.
    let e = m.with_param("multisig.bridge.threshold", 10.0).unwrap_err();
    assert!(e.to_string().contains("multisig.bridge.threshold"), "{e}");
    assert!(SweepSpec::parse("quorum=0.1").is_err());
}

#[test]
fn cli_writes_json_and_markdown_and_fails_on_bad_models() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_recoup"))
        .args([
            "--json",
            "--db",
            dir.path().join("sim.db").to_str().unwrap(),
            "simulate",
            "models/governance/radcad_reference.toml",
        ])
        .args(["--trials", "5000", "--seed", "3", "--threads", "2", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["trials"], 5000);
    let file: PathBuf = dir.path().join("radcad_reference.sim.json");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored, v);
    let md = std::fs::read_to_string(dir.path().join("radcad_reference.sim.md")).unwrap();
    assert!(md.contains("## P(capture by day 100)"));
    // The report is stored under its model hash.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored_json: String = rt.block_on(async {
        use sqlx::Row;
        let store =
            recoup::store::Store::open(&format!("sqlite:{}", dir.path().join("sim.db").display()))
                .await
                .unwrap();
        let row = sqlx::query("SELECT report_json FROM simulations WHERE model_hash = $1")
            .bind(v["model_hash"].as_str().unwrap())
            .fetch_one(store.pool())
            .await
            .unwrap();
        row.try_get(0).unwrap()
    });
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored_json).unwrap(),
        v
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "{GOOD_HEAD}[multisig.m]\nsigners = 3\nthreshold = 4\nkey_compromise_per_day = 0.1\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_recoup"))
        .args([
            "--db",
            dir.path().join("sim.db").to_str().unwrap(),
            "simulate",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("multisig.m.threshold"),
        "{err}"
    );
}
