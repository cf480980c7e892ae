//! Single-core JPEG decode throughput of the candidate decoders on the same
//! photos, all bytes in RAM, alternating decoders in rounds.

use std::time::Instant;

fn load(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            load(&p, out);
        } else if p.extension().is_some_and(|x| x == "jpg" || x == "jpeg") {
            out.push(std::fs::read(&p).expect("read"));
        }
    }
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: jpeg-decoders DIR [LIMIT]");
    let limit: usize = std::env::args().nth(2).map_or(usize::MAX, |s| s.parse().expect("limit"));
    let mut files = Vec::new();
    load(std::path::Path::new(&dir), &mut files);
    files.truncate(limit);
    let mut tj = ringfeed_jpeg::Decompressor::new().expect("libjpeg-turbo");
    let mut buf = Vec::new();
    type Case<'a> = (&'a str, Box<dyn FnMut(&[u8]) + 'a>);
    let mut cases: Vec<Case> = vec![
        ("libjpeg-turbo 3 (ringfeed-jpeg), full", Box::new(|f: &[u8]| {
            let parsed = tj.header(f).expect("header");
            let h = parsed.header();
            buf.resize(h.width as usize * h.height as usize * 3, 0);
            tj.decompress(&parsed, 1, None, ringfeed_jpeg::PixelFormat::Rgb, &mut buf).expect("decode");
        })),
        ("zune-jpeg 0.5, full", Box::new(|f: &[u8]| {
            let mut d = zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(f));
            d.decode().expect("decode");
        })),
        ("image 0.25 (zune-jpeg inside), full", Box::new(|f: &[u8]| {
            image::load_from_memory_with_format(f, image::ImageFormat::Jpeg).expect("decode");
        })),
        ("jpeg-decoder 0.3, full", Box::new(|f: &[u8]| {
            jpeg_decoder::Decoder::new(f).decode().expect("decode");
        })),
        ("jpeg-decoder 0.3, DCT 1/2", Box::new(|f: &[u8]| {
            let mut d = jpeg_decoder::Decoder::new(f);
            d.read_info().expect("info");
            let i = d.info().expect("info");
            d.scale(i.width / 2, i.height / 2).expect("scale");
            d.decode().expect("decode");
        })),
    ];
    let mut rates = vec![Vec::new(); cases.len()];
    for _round in 0..3 {
        for (k, (_, f)) in cases.iter_mut().enumerate() {
            let t = Instant::now();
            for file in &files {
                f(file);
            }
            rates[k].push(files.len() as f64 / t.elapsed().as_secs_f64());
        }
    }
    println!("| decoder | img/s (median of 3 rounds, {} photos, 1 core) |\n|---|---|", files.len());
    for ((name, _), mut r) in cases.iter().zip(rates) {
        r.sort_by(f64::total_cmp);
        println!("| {name} | {:.0} |", r[1]);
    }
}
