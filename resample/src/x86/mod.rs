//! The x86-64 SIMD kernels: all of the crate's unsafe code. Each kernel
//! computes exactly the integers of [`crate::scalar`]; a zero-sized token
//! ([`Avx2`], [`Avx512`]) proves the CPU feature was detected, so the
//! kernels cannot be reached without it, and every load and store has its
//! bounds asserted before the loop that makes it.

mod avx2;
mod avx512;

pub(crate) use avx2::{Avx2, pair_weights};
pub(crate) use avx512::{Avx512, HorizontalPlan};
