//! QR rendering of a typical pairing payload.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

const PAYLOAD: &str = "PAIRD://DEVICES.EXAMPLE.COM:7878/MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U";

fn qr(c: &mut Criterion) {
    c.bench_function("qr/svg 256", |b| {
        b.iter(|| server::qr::svg(black_box(PAYLOAD), 256))
    });
    c.bench_function("qr/png 512", |b| {
        b.iter(|| server::qr::png(black_box(PAYLOAD), 512))
    });
}

criterion_group!(benches, qr);
criterion_main!(benches);
