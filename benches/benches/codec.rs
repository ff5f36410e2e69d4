//! Encode and decode cost of the device protocol, both encodings.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use protocol::Encoding;

fn codec(c: &mut Criterion) {
    let pair = benches::sample_pair();
    let paired = benches::sample_paired();
    let configuration = benches::sample_configuration(4096);
    for encoding in Encoding::ALL {
        let name = encoding.subprotocol();
        let text = encoding.uses_text_frames();
        let pair_bytes = encoding.encode_device(&pair);
        c.bench_function(&format!("{name}/decode pair"), |b| {
            b.iter(|| encoding.decode_device(black_box(&pair_bytes), text, usize::MAX))
        });
        c.bench_function(&format!("{name}/encode paired"), |b| {
            b.iter(|| encoding.encode_server(black_box(&paired)))
        });
        c.bench_function(&format!("{name}/encode 4 KiB configuration"), |b| {
            b.iter(|| encoding.encode_server(black_box(&configuration)))
        });
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
