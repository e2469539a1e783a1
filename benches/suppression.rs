//! A suppression list of 50,000,000 numbers (`cargo bench --bench suppression`): the file's
//! size, the time to read and load it, the bytes it takes in memory per number, and the time
//! of a lookup (numbers listed and not).

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use chrono::Utc;

use callroute::phone::E164;
use callroute::suppression::List;

const ENTRIES: u64 = 50_000_000;

/// A US number from a seed: area code and exchange 200..999, any line number.
fn number(seed: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    let area = 200 + x % 800;
    let exchange = 200 + (x / 800) % 800;
    let line = (x / 640_000) % 10_000;
    10_000_000_000 + area * 10_000_000 + exchange * 10_000 + line
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; there are none to run as tests
    }
    let dir = std::env::temp_dir().join(format!(
        "callroute-bench-suppression-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dnc.txt");
    {
        let mut out =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&file).unwrap());
        for i in 0..ENTRIES {
            writeln!(out, "+{}", number(i)).unwrap();
        }
    }
    let size = std::fs::metadata(&file).unwrap().len();
    let started = Instant::now();
    let bytes = std::fs::read(&file).unwrap();
    let read = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let list = List::parse(
        "dnc",
        Path::new("dnc.txt"),
        &bytes,
        callroute::suppression::National::NANP,
    )
    .unwrap();
    let parsed = started.elapsed().as_secs_f64();
    drop(bytes);
    let bytes_per_number = list.heap_bytes() as f64 / list.len() as f64;
    println!(
        "suppression list of {ENTRIES} lines ({:.0} MB file, {} distinct numbers): read {read:.2} s, loaded {parsed:.2} s; {:.0} MB in memory, {bytes_per_number:.2} bytes per number",
        size as f64 / 1e6,
        list.len(),
        list.heap_bytes() as f64 / 1e6
    );
    let now = Utc::now();
    let lookups = 10_000_000u64;
    // Listed numbers that are valid ones (the generator does not check the numbering plan).
    let listed: Vec<E164> = (0..ENTRIES)
        .step_by(7919)
        .filter_map(|i| E164::parse(&format!("+{}", number(i))).ok())
        .take(1000)
        .collect();
    assert_eq!(listed.len(), 1000);
    let started = Instant::now();
    let mut found = 0;
    for i in 0..lookups {
        found += usize::from(list.find(listed[(i % 1000) as usize], now).is_some());
    }
    let hit_ns = started.elapsed().as_nanos() as f64 / lookups as f64;
    assert_eq!(found as u64, lookups);
    // Numbers in another country: never listed.
    let absent: Vec<E164> = (0..1000)
        .map(|i| E164::parse(&format!("+4479111{:05}", i)).unwrap())
        .collect();
    let started = Instant::now();
    let mut missing = 0;
    for i in 0..lookups {
        missing += usize::from(list.find(absent[(i % 1000) as usize], now).is_none());
    }
    let miss_ns = started.elapsed().as_nanos() as f64 / lookups as f64;
    assert_eq!(missing as u64, lookups);
    println!("  lookup: {hit_ns:.0} ns for a listed number, {miss_ns:.0} ns for one not listed");
    drop(list);

    // The list as the rules name it: what `check`, a start and a reload pay.
    std::fs::write(
        dir.join("rules.yaml"),
        "agents: { a: { model_id: m } }\nnumbers: { \"+14155550100\": {} }\nsuppression: { dnc: { file: dnc.txt } }\ncampaigns: { c: { agent: a, routes: [ { numbers: all } ] } }\n",
    )
    .unwrap();
    let started = Instant::now();
    let first = callroute::rules::load_dir(&dir).unwrap();
    let first_s = started.elapsed().as_secs_f64();
    std::fs::write(
        dir.join("rules.yaml"),
        "# edited\nagents: { a: { model_id: m } }\nnumbers: { \"+14155550100\": {} }\nsuppression: { dnc: { file: dnc.txt } }\ncampaigns: { c: { agent: a, routes: [ { numbers: all } ] } }\n",
    )
    .unwrap();
    let started = Instant::now();
    let again = callroute::rules::load_dir(&dir).unwrap();
    let again_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_ne!(first.rules.content_hash, again.rules.content_hash);
    println!(
        "  rules with the list: loaded in {first_s:.2} s; reloaded after a rules edit, the list unchanged, in {again_ms:.1} ms"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
