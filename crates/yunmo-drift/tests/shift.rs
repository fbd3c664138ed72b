//! A baseline from one distribution, then windows: shifted by half a standard deviation on one feature, that
//! feature (and only it) drifts; unshifted, nothing does; a window below `min_count` is not judged.

use yunmo_drift::draws::Normal;
use yunmo_drift::feature::{Frozen, Values};
use yunmo_drift::{DriftSettings, Monitor, Observation, Sample, Source, State};

/// `rows` rows of four features, N(mean[j], 1) each.
fn batch(normal: &mut Normal, rows: usize, means: [f64; 4]) -> Sample {
    let observations = (0..4)
        .map(|j| Observation {
            feature: format!("X[{j}]"),
            source: Source::Input,
            values: Values::Numeric((0..rows).map(|_| means[j] + normal.next_normal()).collect()),
        })
        .collect();
    Sample { rows: rows as u64, observations }
}

fn monitor_with_baseline(normal: &mut Normal) -> Monitor {
    let mut monitor = Monitor::new(DriftSettings::default());
    for _ in 0..20 {
        monitor.observe(1_000, &batch(normal, 100, [0.0; 4]));
    }
    assert!(monitor.is_frozen(), "2,000 rows freeze the default baseline");
    monitor
}

fn states(monitor: &Monitor, now: u64) -> Vec<(String, State, f64)> {
    monitor.report(now).features.into_iter().map(|feature| (feature.name, feature.state, feature.value.unwrap_or(f64::NAN))).collect()
}

#[test]
fn half_a_standard_deviation_on_one_feature_drifts_that_feature_only() {
    let mut normal = Normal::new(0x9e37_79b9_7f4a_7c15);
    let mut shifted = monitor_with_baseline(&mut normal);
    let mut unshifted = shifted.clone();
    for _ in 0..20 {
        shifted.observe(1_001, &batch(&mut normal, 100, [0.0, 0.0, 0.5, 0.0]));
        unshifted.observe(1_001, &batch(&mut normal, 100, [0.0; 4]));
    }
    for (name, state, psi) in states(&shifted, 1_001) {
        if name == "X[2]" {
            assert!(matches!(state, State::Warn | State::Alert), "{name}: {state:?} at PSI {psi}");
            assert!((0.15..0.4).contains(&psi), "a 0.5 sd shift scores about 0.24 (binned): {psi}");
        } else {
            assert_eq!(state, State::Ok, "{name} at PSI {psi}");
        }
    }
    for (name, state, psi) in states(&unshifted, 1_001) {
        assert_eq!(state, State::Ok, "{name} at PSI {psi}");
        assert!(psi < 0.05, "{name}: {psi}");
    }
    let report = shifted.report(1_001);
    assert!(matches!(report.state, State::Warn | State::Alert));
    let feature = &report.features[2];
    assert_eq!((feature.window_count, feature.baseline_count, feature.window), (2000, 2000, "current"));
    assert_eq!(feature.bins.len(), 13, "10 quantile bins, below, above, non-finite");
    let total: f64 = feature.bins.iter().map(|bin| bin.window).sum();
    assert!((total - 1.0).abs() < 1e-9);
}

#[test]
fn a_window_is_judged_only_past_min_count_and_the_last_one_stays_judged() {
    let mut normal = Normal::new(42);
    let mut monitor = monitor_with_baseline(&mut normal);
    assert_eq!(monitor.report(1_000).state, State::InsufficientData, "no window rows yet");
    for _ in 0..9 {
        monitor.observe(1_500, &batch(&mut normal, 100, [3.0; 4]));
    }
    let report = monitor.report(1_500);
    assert_eq!(report.state, State::InsufficientData, "900 rows are below min_count even when far off");
    assert!(report.features[0].value.unwrap() > 1.0, "the value is still shown");
    monitor.observe(1_500, &batch(&mut normal, 100, [3.0; 4]));
    assert_eq!(monitor.report(1_500).state, State::Alert);
    // The next hour: the full window that ended stays the one judged until the new one has enough rows.
    monitor.observe(3_700, &batch(&mut normal, 100, [0.0; 4]));
    let report = monitor.report(3_700);
    assert_eq!((report.state, report.features[0].window), (State::Alert, "last"));
    assert_eq!(report.window.last.as_ref().map(|last| (last.start, last.rows)), Some((0, 1000)));
    assert_eq!(report.window.current.rows, 100);
}

#[test]
fn a_reference_sample_replaces_the_baseline() {
    let mut normal = Normal::new(7);
    let mut monitor = Monitor::new(DriftSettings::default());
    monitor.observe(10, &batch(&mut normal, 100, [0.0; 4]));
    assert_eq!(monitor.report(10).state, State::CollectingBaseline);
    let reference: Vec<Sample> = (0..10).map(|_| batch(&mut normal, 100, [5.0; 4])).collect();
    monitor.set_reference(20, &reference);
    let report = monitor.report(20);
    assert_eq!((report.baseline.source, report.baseline.rows, report.baseline.frozen_at), ("reference", 1000, Some(20)));
    for _ in 0..10 {
        monitor.observe(30, &batch(&mut normal, 100, [5.0; 4]));
    }
    assert_eq!(monitor.report(30).state, State::Ok, "the same distribution as the reference");
}

#[test]
fn a_stored_baseline_round_trips_and_is_adopted_by_another_monitor() {
    let mut normal = Normal::new(9);
    let first = monitor_with_baseline(&mut normal);
    let stored = serde_json::to_string(&first.baseline().expect("frozen")).unwrap();
    let mut other = Monitor::new(DriftSettings::default());
    other.observe(1_000, &batch(&mut normal, 100, [0.0; 4]));
    other.adopt(serde_json::from_str(&stored).unwrap());
    let (taken, original) = (other.baseline().unwrap(), first.baseline().unwrap());
    assert_eq!((taken.rows, taken.frozen_at, taken.features.len()), (original.rows, original.frozen_at, original.features.len()));
    for (name, (_, frozen)) in &original.features {
        // JSON keeps each bound to its last bit or the next float: the same bins.
        let (Frozen::Numeric { edges: a, counts: ca, .. }, (_, Frozen::Numeric { edges: b, counts: cb, .. })) =
            (frozen, &taken.features[name])
        else {
            panic!("{name}")
        };
        assert_eq!(ca, cb, "{name}");
        assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12 * x.abs().max(1.0)), "{name}");
    }
    for _ in 0..20 {
        other.observe(1_001, &batch(&mut normal, 100, [0.0, 0.0, 0.5, 0.0]));
    }
    let report = other.report(1_001);
    assert_eq!(report.baseline.rows, 2000);
    assert!(matches!(report.features[2].state, State::Warn | State::Alert), "judged against the adopted baseline");
}
