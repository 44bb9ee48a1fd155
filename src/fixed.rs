//! `format!("{x:.N}")` for an `f64`, without core's float formatting
//! (Grisu/Dragon4 with their tables: ~8 KiB of the armv7 binary), for the
//! few figures the wear display prints with decimals.
//!
//! The text is the same as core's, character for character: the exact
//! binary value of `x` rounded to `prec` decimals, ties to even; `-` for a
//! negative sign (`-0.0` too); `NaN`, `inf`, `-inf`. The tests compare the
//! two over many values.

use std::fmt::Write as _;

/// `x` with `prec` (at most 9) decimals: `fixed(1.25, 1)` = `"1.2"`, as
/// `format!("{:.1}", 1.25)`.
pub fn fixed(x: f64, prec: u32) -> String {
    let prec = prec.min(9);
    let mut s = String::new();
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_sign_negative() {
        s.push('-');
    }
    if x.is_infinite() {
        s.push_str("inf");
        return s;
    }
    let bits = x.to_bits();
    let frac = bits & ((1 << 52) - 1);
    // x = m × 2^e, m < 2^53.
    let (m, e) = match (bits >> 52) & 0x7ff {
        0 => (frac, -1074),
        b => (frac | 1 << 52, b as i32 - 1075),
    };
    let Ok(k) = u32::try_from(-e) else {
        // An integer (e ≥ 0): no fraction to round.
        push_shifted(&mut s, m, e.unsigned_abs());
        push_digits(&mut s, 0, prec);
        return s;
    };
    // x = int + r / 2^k, r < 2^k. With k > 84 the fraction times 10^prec
    // is under 2^53 × 2^30 / 2^85 < 1/2: it rounds to zero, no tie.
    let (mut int, mut r) = if k >= 64 {
        (0, m)
    } else {
        (m >> k, m & ((1 << k) - 1))
    };
    if k > 84 {
        r = 0;
    }
    let k = k.min(84);
    let mut r = u128::from(r);
    let mut digits = 0u64;
    for _ in 0..prec {
        // r × 10 < 2^(k + 4) ≤ 2^88: no overflow.
        r = (r << 3) + (r << 1);
        digits = digits * 10 + (r >> k) as u64;
        r &= (1u128 << k) - 1;
    }
    // Round what is left: above half up, a tie to an even last digit.
    let half = if k == 0 { 0 } else { 1u128 << (k - 1) };
    let last_odd = if prec == 0 {
        int & 1 == 1
    } else {
        digits & 1 == 1
    };
    if k > 0 && (r > half || (r == half && last_odd)) {
        digits += 1;
        if digits == 10u64.pow(prec) {
            digits = 0;
            int += 1;
        }
    }
    let _ = write!(s, "{int}");
    push_digits(&mut s, digits, prec);
    s
}

/// `.` and `d` on `prec` digits (nothing when `prec` is 0).
fn push_digits(s: &mut String, d: u64, prec: u32) {
    if prec > 0 {
        let _ = write!(s, ".{d:0w$}", w = prec as usize);
    }
}

/// The decimal digits of `m × 2^e`.
fn push_shifted(s: &mut String, m: u64, e: u32) {
    if e < 11 {
        // m < 2^53: fits.
        let _ = write!(s, "{}", m << e);
        return;
    }
    // Little-endian 32-bit limbs of m << e, then repeated division by 10^9.
    let mut limbs = vec![0u32; (e / 32) as usize];
    let v = u128::from(m) << (e % 32);
    limbs.extend([v as u32, (v >> 32) as u32, (v >> 64) as u32]);
    let mut chunks = Vec::new();
    while limbs.iter().any(|&l| l != 0) {
        let mut rem = 0u64;
        for l in limbs.iter_mut().rev() {
            let cur = rem << 32 | u64::from(*l);
            *l = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        chunks.push(rem as u32);
    }
    for (i, c) in chunks.iter().rev().enumerate() {
        let w = if i == 0 { 0 } else { 9 };
        let _ = write!(s, "{c:0w$}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(x: f64) {
        for p in 0..=9u32 {
            assert_eq!(fixed(x, p), format!("{x:.*}", p as usize), "{x:e} .{p}");
        }
    }

    #[test]
    fn the_figures_the_display_prints() {
        assert_eq!(fixed(1.5, 1), "1.5");
        assert_eq!(fixed(0.0625, 4), "0.0625");
        assert_eq!(fixed(0.25, 1), "0.2");
        assert_eq!(fixed(0.35, 1), "0.3");
        assert_eq!(fixed(0.05, 1), "0.1");
        assert_eq!(fixed(16384.0, 1), "16384.0");
        assert_eq!(fixed(-0.0, 1), "-0.0");
        assert_eq!(fixed(f64::INFINITY, 2), "inf");
        assert_eq!(fixed(f64::NEG_INFINITY, 2), "-inf");
        assert_eq!(fixed(f64::NAN, 2), "NaN");
        // 100 GiB/day of 80000 GiB: the f64 is just above the tie.
        assert_eq!(fixed(100.0 / 80000.0, 4), "0.0013");
        for x in [
            0.0,
            1.0,
            0.5,
            1.5,
            2.5,
            0.125,
            0.375,
            9.99999,
            9.5,
            99.95,
            1e21,
            1.8446744073709552e21,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            -1.25,
            2f64.powi(53) + 2.0,
            2f64.powi(64),
            1.0 - f64::EPSILON,
        ] {
            check(x);
        }
    }

    #[test]
    fn matches_core_over_many_values() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..20_000 {
            // Every bit pattern, then values of the sizes the display sees.
            let bits = next();
            let x = f64::from_bits(bits);
            if x.is_finite() {
                check(x);
            }
            let exp = (next() % 160) as i32 - 90;
            check(f64::from_bits(next() >> 12 | 0x3FF0_0000_0000_0000) * 2f64.powi(exp));
            // Ratios of integers (rates, percentages) and near-ties.
            let a = next() % 1_000_000;
            let b = next() % 100_000 + 1;
            check(a as f64 / b as f64);
            check((a as f64 + 0.5) / 10f64.powi((b % 7) as i32));
        }
    }
}
