//! The tile unit (AMX, Intel Xeon since Sapphire Rapids): whether this process may use it, its
//! configuration, and the two block products the dense layers and the attention run on it,
//! bf16 (`tdpbf16ps`) and unsigned × signed bytes (`tdpbusd`). Each product is a 32 × 32 block
//! of four 16 × 16 accumulator tiles.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod tiles {
    use super::super::bf16::{BLOCK, DEPTH, TILE};
    use std::arch::asm;
    use std::sync::OnceLock;

    /// AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22), and Linux let this process
    /// use the tile data registers (they are off until a process asks).
    pub fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
            let has_tiles = leaf7.edx & (1 << 24) != 0 && leaf7.edx & (1 << 22) != 0;
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: arch_prctl with this request only changes which state the kernel saves
            // for this process; it reads no memory of ours.
            has_tiles
                && unsafe {
                    libc::syscall(
                        libc::SYS_arch_prctl,
                        ARCH_REQ_XCOMP_PERM,
                        XFEATURE_XTILEDATA,
                    )
                } == 0
        })
    }

    /// Tile palette 1: tmm0–3 the 2 × 2 accumulators (16 rows × 16 f32), tmm4–5 two input
    /// tiles (16 rows × 32 bf16), tmm6–7 two weight tiles (16 pairs × 16 outputs × 2).
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        bytes_per_row: [u16; 16],
        rows: [u8; 16],
    }

    /// Loads the tile configuration on this thread.
    ///
    /// # Safety
    /// `available()` is true.
    pub unsafe fn configure() {
        let mut config = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        for tile in 0..8 {
            config.bytes_per_row[tile] = 64;
            config.rows[tile] = TILE as u8;
        }
        asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly));
    }

    /// # Safety
    /// `configure` ran on this thread.
    pub unsafe fn release() {
        asm!("tilerelease", options(nostack, nomem));
    }

    /// `sums` (32 × 32, row-major) = the block's 32 input rows (`depth` bf16 each, from `a`)
    /// times the 32 outputs whose packed weights are `b` (`steps` steps of two tiles).
    ///
    /// # Safety
    /// `configure` ran on this thread; `a` holds 32 rows of `depth` = `steps`·32 values.
    pub unsafe fn block_bf16(
        a: &[u16],
        depth: usize,
        b: &[u16],
        steps: usize,
        sums: &mut [f32; BLOCK * BLOCK],
    ) {
        debug_assert!(a.len() >= BLOCK * depth && b.len() >= steps * 2 * TILE * DEPTH);
        let a_stride = depth * 2;
        let (a0, a1) = (a.as_ptr(), a.as_ptr().add(TILE * depth));
        zero_accumulators();
        for step in 0..steps {
            let b0 = b.as_ptr().add(step * 2 * TILE * DEPTH);
            let b1 = b0.add(TILE * DEPTH);
            let k = step * DEPTH;
            asm!(
                "tileloadd tmm4, [{a0} + {stride}*1]",
                "tileloadd tmm5, [{a1} + {stride}*1]",
                "tileloadd tmm6, [{b0} + {b_stride}*1]",
                "tileloadd tmm7, [{b1} + {b_stride}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a0.add(k),
                a1 = in(reg) a1.add(k),
                b0 = in(reg) b0,
                b1 = in(reg) b1,
                stride = in(reg) a_stride,
                b_stride = in(reg) 64usize,
                options(nostack, readonly),
            );
        }
        store_accumulators(sums.as_mut_ptr().cast());
    }

    /// Sets the four accumulator tiles (tmm0–3) to zero.
    ///
    /// # Safety
    /// `configure` ran on this thread.
    #[inline(always)]
    unsafe fn zero_accumulators() {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
    }

    /// Stores the four accumulator tiles as one 32 × 32 block of 4-byte values (f32 or i32),
    /// row-major, at `out`.
    ///
    /// # Safety
    /// `configure` ran on this thread; `out` is valid for 32 × 32 4-byte writes.
    #[inline(always)]
    unsafe fn store_accumulators(out: *mut u32) {
        asm!(
            "tilestored [{c0} + {stride}*1], tmm0",
            "tilestored [{c1} + {stride}*1], tmm1",
            "tilestored [{c2} + {stride}*1], tmm2",
            "tilestored [{c3} + {stride}*1], tmm3",
            c0 = in(reg) out,
            c1 = in(reg) out.add(TILE),
            c2 = in(reg) out.add(TILE * BLOCK),
            c3 = in(reg) out.add(TILE * BLOCK + TILE),
            stride = in(reg) BLOCK * 4,
            options(nostack),
        );
    }

    /// [`available`], and AMX-INT8 (CPUID leaf 7, EDX bit 25).
    pub fn available_int8() -> bool {
        available() && std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 25) != 0
    }

    /// `sums` (32 × 32 i32, row-major) = 32 rows of unsigned bytes (from `a`, rows `a_stride`
    /// bytes apart) times 32 columns of signed bytes packed four inputs to a column, 16 columns
    /// to a 64-byte row (from `b`: the first 16 columns' groups `b_stride` bytes apart, the next
    /// 16 columns 64 bytes on), over `steps` steps of 64 inputs: `tdpbusd`, the same integer sums
    /// as `vpdpbusd`.
    ///
    /// # Safety
    /// `configure` ran on this thread; `a` holds 32 rows of `steps`·64 bytes `a_stride` apart, `b`
    /// holds `steps`·16 group rows `b_stride` apart, each at least 128 bytes long.
    pub unsafe fn block_u8i8(
        a: *const u8,
        a_stride: usize,
        b: *const i8,
        b_stride: usize,
        steps: usize,
        sums: &mut [i32; BLOCK * BLOCK],
    ) {
        let (a0, a1) = (a, a.add(TILE * a_stride));
        zero_accumulators();
        for step in 0..steps {
            let k = step * 4 * TILE;
            let b0 = b.add(step * TILE * b_stride);
            asm!(
                "tileloadd tmm4, [{a0} + {a_stride}*1]",
                "tileloadd tmm5, [{a1} + {a_stride}*1]",
                "tileloadd tmm6, [{b0} + {b_stride}*1]",
                "tileloadd tmm7, [{b1} + {b_stride}*1]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                a0 = in(reg) a0.add(k),
                a1 = in(reg) a1.add(k),
                b0 = in(reg) b0,
                b1 = in(reg) b0.add(4 * TILE),
                a_stride = in(reg) a_stride,
                b_stride = in(reg) b_stride,
                options(nostack, readonly),
            );
        }
        store_accumulators(sums.as_mut_ptr().cast());
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod tiles {
    use super::super::bf16::BLOCK;

    pub fn available() -> bool {
        false
    }
    pub fn available_int8() -> bool {
        false
    }
    pub unsafe fn configure() {}
    pub unsafe fn release() {}
    pub unsafe fn block_bf16(
        _: &[u16],
        _: usize,
        _: &[u16],
        _: usize,
        _: &mut [f32; BLOCK * BLOCK],
    ) {
        unreachable!("no tile unit on this target")
    }
    pub unsafe fn block_u8i8(
        _: *const u8,
        _: usize,
        _: *const i8,
        _: usize,
        _: usize,
        _: &mut [i32; BLOCK * BLOCK],
    ) {
        unreachable!("no tile unit on this target")
    }
}

pub(super) use tiles::*;
