//! The organization actor's grant path, in process: `Engine::pair` for a burst of devices on a
//! real SQLite file (synchronous=FULL), without sockets. One iteration pairs `burst` devices at
//! once; criterion reports the time per iteration, so pairings/s = burst / time.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use benches::Organization;
use criterion::{Criterion, criterion_group, criterion_main};
use engine::PairAnswer;
use testkit::TestDevice;

async fn fixture(licenses: u32) -> Organization {
    let organization = Organization::start().await;
    organization.add_licenses(u64::from(licenses)).await;
    organization
}

async fn burst(fixture: &Organization, devices: usize) -> Duration {
    // Prepared before the clock starts: a new installation per pairing.
    let requests: Vec<_> = (0..devices)
        .map(|_| TestDevice::new().pair_request(&fixture.code))
        .collect();
    let peer = IpAddr::from([127, 0, 0, 1]);
    let start = Instant::now();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let engine = fixture.engine.clone();
            tokio::spawn(async move {
                let link = engine.new_link(peer);
                let answer = engine.pair(request, &link).await;
                assert!(matches!(answer, PairAnswer::Paired(_)), "{answer:?}");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    start.elapsed()
}

fn grant(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("grant");
    group.sample_size(10);
    for devices in [1usize, 100, 2000] {
        // Enough licenses for every iteration criterion may run.
        let fixture = runtime.block_on(fixture(200_000));
        group.throughput(criterion::Throughput::Elements(devices as u64));
        group.bench_function(format!("burst of {devices}"), |b| {
            b.to_async(&runtime).iter_custom(|iterations| {
                let fixture = &fixture;
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        total += burst(fixture, devices).await;
                    }
                    total
                }
            })
        });
        runtime.block_on(fixture.engine.shutdown());
    }
    group.finish();
}

criterion_group!(benches, grant);
criterion_main!(benches);
