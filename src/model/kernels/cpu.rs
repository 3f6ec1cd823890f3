//! Which CPU this is (vendor, family, model from CPUID), and the kernel choices measured on
//! each family the project has run on. A table rather than a timing probe: a probe's choice
//! can differ between two processes on a loaded machine, and with it their scores.

/// The CPU's identity as CPUID gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuId {
    pub vendor: Vendor,
    /// The display family (base family plus the extended one where the base is 15).
    pub family: u32,
    /// The display model (with the extended model bits for families 6 and 15 and above).
    pub model: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Other,
}

impl CpuId {
    #[cfg(target_arch = "x86_64")]
    pub fn of_this_machine() -> Self {
        use std::arch::x86_64::__cpuid;
        let leaf0 = __cpuid(0);
        let name: Vec<u8> = [leaf0.ebx, leaf0.edx, leaf0.ecx]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        let vendor = match name.as_slice() {
            b"GenuineIntel" => Vendor::Intel,
            b"AuthenticAMD" => Vendor::Amd,
            _ => Vendor::Other,
        };
        Self::from_signature(vendor, __cpuid(1).eax)
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn of_this_machine() -> Self {
        CpuId {
            vendor: Vendor::Other,
            family: 0,
            model: 0,
        }
    }

    /// Decodes CPUID leaf 1's EAX (the processor signature).
    pub fn from_signature(vendor: Vendor, eax: u32) -> Self {
        let base_family = (eax >> 8) & 0xf;
        let base_model = (eax >> 4) & 0xf;
        let family = if base_family == 0xf {
            base_family + ((eax >> 20) & 0xff)
        } else {
            base_family
        };
        let model = if base_family == 0x6 || base_family == 0xf {
            (((eax >> 16) & 0xf) << 4) | base_model
        } else {
            base_model
        };
        CpuId {
            vendor,
            family,
            model,
        }
    }

    /// A short name for reports: "Intel family 6 model 143", "AMD Zen 4 (family 25 model 17)".
    pub fn describe(self) -> String {
        let vendor = match self.vendor {
            Vendor::Intel => "Intel",
            Vendor::Amd => "AMD",
            Vendor::Other => "other vendor",
        };
        match self.zen_generation() {
            Some(zen) => format!(
                "{vendor} Zen {zen} (family {} model {})",
                self.family, self.model
            ),
            None => format!("{vendor} family {} model {}", self.family, self.model),
        }
    }

    /// AMD's core generation: family 25 (0x19) is Zen 3 below model 0x10 and in 0x20–0x5f,
    /// Zen 4 elsewhere; family 26 (0x1a) is Zen 5.
    pub fn zen_generation(self) -> Option<u32> {
        match (self.vendor, self.family) {
            (Vendor::Amd, 0x17) => Some(2),
            (Vendor::Amd, 0x19) if self.model < 0x10 || (0x20..0x60).contains(&self.model) => {
                Some(3)
            }
            (Vendor::Amd, 0x19) => Some(4),
            (Vendor::Amd, 0x1a) => Some(5),
            _ => None,
        }
    }

    /// Whether `gemm`'s 512-bit f32 kernels measured faster than its 256-bit ones on this CPU
    /// family (BENCHMARKS.md): Intel Xeons with AVX-512 (1.28–1.7× on the encoder's shapes,
    /// 2026-12-04 to 2026-12-07) and AMD's Zen 5 (1.4–1.6×, issue 37's measurement of
    /// 2026-12), not AMD's Zen 4, which splits 512-bit operations in two (0.82–0.84×,
    /// 2026-11-27). A family not measured keeps the 256-bit kernels, which lower no CPU's
    /// clock; `GLIZNET_F32_KERNEL` forces either, and `bench/f32-kernels.py` measures both on
    /// the machine at hand.
    pub fn prefers_512_bit_f32(self) -> bool {
        match self.vendor {
            Vendor::Intel => self.family == 6,
            Vendor::Amd => self.zen_generation() == Some(5),
            Vendor::Other => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signatures of the CPUs the project has run on (CPUID leaf 1 EAX, as /proc/cpuinfo's
    /// "cpu family" and "model" report them).
    #[test]
    fn signatures_decode_to_the_display_family_and_model() {
        // Intel Xeon (Sapphire Rapids): family 6, model 143 (0x8f), stepping 8.
        let spr = CpuId::from_signature(Vendor::Intel, 0x0008_06f8);
        assert_eq!((spr.family, spr.model), (6, 143));
        assert!(spr.prefers_512_bit_f32());
        assert_eq!(spr.zen_generation(), None);
        // Intel family 6 model 167 (0xa7), as the 2026-12-06 machine reported it.
        let a7 = CpuId::from_signature(Vendor::Intel, 0x000a_0671);
        assert_eq!((a7.family, a7.model), (6, 167));
        // AMD EPYC Milan (Zen 3): family 25 (0xf + 0xa), model 1.
        let milan = CpuId::from_signature(Vendor::Amd, 0x00a0_0f11);
        assert_eq!((milan.family, milan.model), (25, 1));
        assert_eq!(milan.zen_generation(), Some(3));
        // AMD EPYC Genoa (Zen 4): family 25, model 17 (0x11).
        let genoa = CpuId::from_signature(Vendor::Amd, 0x00a1_0f11);
        assert_eq!((genoa.family, genoa.model), (25, 17));
        assert_eq!(genoa.zen_generation(), Some(4));
        assert!(!genoa.prefers_512_bit_f32());
        // AMD EPYC Turin (Zen 5): family 26 (0xf + 0xb), model 2.
        let turin = CpuId::from_signature(Vendor::Amd, 0x00b0_0f21);
        assert_eq!((turin.family, turin.model), (26, 2));
        assert_eq!(turin.zen_generation(), Some(5));
        assert_eq!(turin.describe(), "AMD Zen 5 (family 26 model 2)");
        assert!(turin.prefers_512_bit_f32());
        assert!(!milan.prefers_512_bit_f32());
    }

    /// The identity read here agrees with what Linux reports in /proc/cpuinfo.
    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn this_machine_matches_proc_cpuinfo() {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let field = |name: &str| -> u32 {
            info.lines()
                .find(|l| l.split(':').next().map(str::trim) == Some(name))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().parse().unwrap())
                .unwrap()
        };
        let cpu = CpuId::of_this_machine();
        assert_eq!(cpu.family, field("cpu family"));
        assert_eq!(cpu.model, field("model"));
    }
}
