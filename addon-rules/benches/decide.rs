//! Criterion benchmark of `Policy::decide` at 10 / 1 000 / 10 000 routes
//! (mix from gen.rs), and of loading those routes files.
//! Run: cargo bench -p addon-rules --bench decide

use std::hint::black_box;

use addon_rules::{BodyHint, Policy, RequestFacts, Transport, parse_connect_target};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Version};

#[path = "gen.rs"]
mod generate;

fn bench_decide(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    for n in [10usize, 1_000, 10_000] {
        let policy =
            Policy::from_text(&generate::routes_yaml(n), "bench").expect("generated routes load");
        let reqs: Vec<_> = generate::requests(n)
            .into_iter()
            .map(|(host, path)| {
                let connect = parse_connect_target(&format!("{host}:443")).expect("target");
                let mut headers = HeaderMap::new();
                headers.insert(
                    http::header::HOST,
                    HeaderValue::from_str(&host).expect("host"),
                );
                headers.insert(
                    http::header::USER_AGENT,
                    HeaderValue::from_static("bench/1"),
                );
                headers.insert(
                    http::header::ACCEPT,
                    HeaderValue::from_static("application/json"),
                );
                (connect, host, path, headers)
            })
            .collect();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            let mut k = 0usize;
            b.iter(|| {
                let (connect, host, path, headers) = &reqs[k % reqs.len()];
                k += 1;
                let facts = RequestFacts {
                    transport: Transport::Tls {
                        connect,
                        sni: Some(host),
                    },
                    method: &Method::GET,
                    target: path,
                    version: Version::HTTP_11,
                    authority: None,
                    headers,
                    body: BodyHint::Empty,
                };
                black_box(policy.decide(black_box(&facts)).label())
            })
        });
    }
    g.finish();
}

fn bench_load(c: &mut Criterion) {
    load_group(c, "load_yaml", generate::routes_yaml);
    load_group(c, "load_json", generate::routes_json);
}

fn load_group(c: &mut Criterion, name: &str, make: fn(usize) -> String) {
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    for n in [10usize, 1_000, 10_000] {
        let text = make(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter_with_large_drop(|| Policy::from_text(black_box(text), "bench").expect("loads"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_decide, bench_load);
criterion_main!(benches);
