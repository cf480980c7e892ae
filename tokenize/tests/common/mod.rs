//! Generated documents for the tokenizer tests: words, numbers,
//! punctuation, contractions and whitespace runs of every kind, in many
//! scripts.

#![allow(dead_code, unreachable_pub)]

/// Pieces of text the documents are made of.
pub const PARTS: [&str; 25] = [
    "the",
    "Tokenizer",
    "don't",
    "it's",
    "we'll",
    "1984",
    "3.14",
    "über",
    "naïve",
    "東京",
    "Москва",
    "🦀",
    "(",
    ")",
    ",",
    ".",
    "!",
    "--",
    "'",
    "\"",
    "x_y",
    "CamelCase",
    "ünïcödé",
    "١٢٣",
    "<|endoftext|>",
];

/// What separates them.
const SPACES: [&str; 11] = [" ", " ", " ", " ", "  ", "   ", "\n", "\n\n", "\t", " \n ", "\u{a0}"];

/// A document of `words` pieces of `parts`, seeded.
pub fn document(seed: u64, words: usize, parts: &[&str]) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize
    };
    let mut s = String::new();
    for _ in 0..words {
        s.push_str(parts[next() % parts.len()]);
        s.push_str(SPACES[next() % SPACES.len()]);
    }
    s
}
