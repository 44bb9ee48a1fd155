//! The failsafe button: one GPIO line read once through the GPIO character
//! device (`/dev/gpiochipN`, uAPI v2), with no wait.
//!
//! `overlay.failsafe_gpio=CHIP:LINE[:active-low]`: CHIP is `gpiochipN`,
//! `/dev/gpiochipN` or just `N`; LINE the line's offset on that chip. The
//! line is requested as an input (`GPIO_V2_GET_LINE_IOCTL`, with
//! `GPIO_V2_LINE_FLAG_ACTIVE_LOW` when asked, so the kernel inverts it), its
//! value read (`GPIO_V2_LINE_GET_VALUES_IOCTL`), and the line released
//! (its fd closed). "Active" means pressed.
//!
//! The structures are transcribed from `include/uapi/linux/gpio.h`; their
//! sizes are checked at compile time against the header's (the kernel has
//! the same `static_assert`s), so a wrong field cannot reach a driver.

use super::ParseError;
use std::fmt;
use std::io;
use std::mem::size_of;

/// The button's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpioSpec {
    /// The chip's device node, `/dev/gpiochipN`.
    pub chip: String,
    /// The line's offset on the chip.
    pub line: u32,
    /// Pressed reads low (the usual button to ground with a pull-up).
    pub active_low: bool,
}

/// `GPIO_V2_LINES_MAX`: a request holds at most 64 offsets; the kernel
/// refuses offsets past the chip's line count (EINVAL), we refuse absurd ones.
const MAX_LINE: u32 = 65_535;

impl GpioSpec {
    /// `CHIP:LINE[:active-low]`.
    pub fn parse(s: &str) -> Result<GpioSpec, ParseError> {
        let mut parts = s.split(':');
        let chip = parts.next().unwrap_or("");
        let line = parts.next().ok_or(ParseError::Gpio("no line"))?;
        let active_low = match parts.next() {
            None => false,
            Some("active-low") => true,
            Some(_) => return Err(ParseError::Gpio("unknown flag")),
        };
        if parts.next().is_some() {
            return Err(ParseError::Gpio("too many fields"));
        }
        let chip =
            if !chip.is_empty() && chip.len() <= 10 && chip.bytes().all(|b| b.is_ascii_digit()) {
                format!("/dev/gpiochip{chip}")
            } else {
                super::parse_dev_node(chip)?
            };
        let line = super::parse_number(Some(line), 0, u64::from(MAX_LINE))? as u32;
        Ok(GpioSpec {
            chip,
            line,
            active_low,
        })
    }
}

impl fmt::Display for GpioSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Shown as it is written: a bare number is /dev/gpiochipN, so a
        // node named by digits alone keeps its /dev/.
        let chip = match self.chip.strip_prefix("/dev/") {
            Some(n) if !n.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => &self.chip,
        };
        write!(f, "{chip}:{}", self.line)?;
        if self.active_low {
            f.write_str(":active-low")?;
        }
        Ok(())
    }
}

/// Why the button could not be read (the boot goes on, not failsafe).
#[derive(Debug)]
pub enum GpioError {
    /// The chip's node could not be opened (no such chip: ENOENT).
    Open(io::Error),
    /// `GPIO_V2_GET_LINE_IOCTL` failed: EINVAL for a line past the chip's
    /// last, EBUSY for a line another driver holds.
    Request(io::Error),
    /// `GPIO_V2_LINE_GET_VALUES_IOCTL` failed.
    Read(io::Error),
}

impl fmt::Display for GpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, e) = match self {
            GpioError::Open(e) => ("open the chip", e),
            GpioError::Request(e) => ("request the line as an input", e),
            GpioError::Read(e) => ("read the line", e),
        };
        write!(f, "cannot {what}: {e}")
    }
}

/// Reads a button once.
pub trait GpioReader {
    /// Whether the line is active (pressed), honouring `active_low`.
    fn is_active(&mut self, spec: &GpioSpec) -> Result<bool, GpioError>;
}

// ---------------------------------------------------------------------------
// uAPI v2: include/uapi/linux/gpio.h
// ---------------------------------------------------------------------------

/// `GPIO_V2_LINES_MAX`.
const LINES_MAX: usize = 64;
/// `GPIO_MAX_NAME_SIZE`.
const NAME_SIZE: usize = 32;
/// `GPIO_V2_LINE_NUM_ATTRS_MAX`.
const NUM_ATTRS_MAX: usize = 10;
/// `GPIO_V2_LINE_FLAG_ACTIVE_LOW`.
const FLAG_ACTIVE_LOW: u64 = 1 << 1;
/// `GPIO_V2_LINE_FLAG_INPUT`.
const FLAG_INPUT: u64 = 1 << 2;

/// `struct gpio_v2_line_attribute`: `__u32 id; __u32 padding; union {
/// __aligned_u64 flags; __aligned_u64 values; __u32 debounce_period_us; }`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineAttribute {
    id: u32,
    padding: u32,
    value: u64,
}

/// `struct gpio_v2_line_config_attribute { attr; __aligned_u64 mask; }`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineConfigAttribute {
    attr: LineAttribute,
    mask: u64,
}

/// `struct gpio_v2_line_config`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineConfig {
    flags: u64,
    num_attrs: u32,
    padding: [u32; 5],
    attrs: [LineConfigAttribute; NUM_ATTRS_MAX],
}

/// `struct gpio_v2_line_request`; the kernel fills in `fd`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LineRequest {
    offsets: [u32; LINES_MAX],
    consumer: [u8; NAME_SIZE],
    config: LineConfig,
    num_lines: u32,
    event_buffer_size: u32,
    padding: [u32; 5],
    fd: i32,
}

/// `struct gpio_v2_line_values { __aligned_u64 bits; __aligned_u64 mask; }`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineValues {
    bits: u64,
    mask: u64,
}

// The kernel's own checks (gpiolib-cdev.c / gpio.h): the same sizes on
// every ABI thanks to the explicit padding and __aligned_u64.
const _: () = assert!(size_of::<LineAttribute>() == 16);
const _: () = assert!(size_of::<LineConfigAttribute>() == 24);
const _: () = assert!(size_of::<LineConfig>() == 272);
const _: () = assert!(size_of::<LineRequest>() == 592);
const _: () = assert!(size_of::<LineValues>() == 16);

// `#define GPIO_V2_GET_LINE_IOCTL _IOWR(0xB4, 0x07, struct gpio_v2_line_request)`
nix::ioctl_readwrite!(
    /// `ioctl(chip_fd, GPIO_V2_GET_LINE_IOCTL, struct gpio_v2_line_request *)`
    gpio_v2_get_line,
    0xB4,
    0x07,
    LineRequest
);
// `#define GPIO_V2_LINE_GET_VALUES_IOCTL _IOWR(0xB4, 0x0E, struct gpio_v2_line_values)`
nix::ioctl_readwrite!(
    /// `ioctl(line_fd, GPIO_V2_LINE_GET_VALUES_IOCTL, struct gpio_v2_line_values *)`
    gpio_v2_line_get_values,
    0xB4,
    0x0E,
    LineValues
);

/// The request for one input line, named "overlay-init" (the consumer
/// shown by `gpioinfo` while it is held).
fn line_request(spec: &GpioSpec) -> LineRequest {
    let mut consumer = [0u8; NAME_SIZE];
    for (d, s) in consumer.iter_mut().zip(b"overlay-init-failsafe") {
        *d = *s;
    }
    let mut offsets = [0u32; LINES_MAX];
    offsets[0] = spec.line;
    LineRequest {
        offsets,
        consumer,
        config: LineConfig {
            flags: FLAG_INPUT | if spec.active_low { FLAG_ACTIVE_LOW } else { 0 },
            ..LineConfig::default()
        },
        num_lines: 1,
        event_buffer_size: 0,
        padding: [0; 5],
        fd: -1,
    }
}

/// The real GPIO character device.
pub struct LinuxGpio;

impl GpioReader for LinuxGpio {
    fn is_active(&mut self, spec: &GpioSpec) -> Result<bool, GpioError> {
        use rustix::fs::{Mode, OFlags};
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let chip = rustix::fs::open(
            std::path::Path::new(&spec.chip),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| GpioError::Open(e.into()))?;
        let mut req = line_request(spec);
        // SAFETY: `req` is a live, fully initialised `struct
        // gpio_v2_line_request` (size checked above); the kernel reads it
        // and writes only its `fd` field.
        unsafe { gpio_v2_get_line(chip.as_raw_fd(), &mut req) }
            .map_err(|e| GpioError::Request(e.into()))?;
        if req.fd < 0 {
            return Err(GpioError::Request(io::Error::from_raw_os_error(
                nix::libc::EBADF,
            )));
        }
        // SAFETY: the kernel just returned this fd for the line request and
        // nothing else owns it: closing it releases the line.
        let line = unsafe { OwnedFd::from_raw_fd(req.fd) };
        let mut values = LineValues { bits: 0, mask: 1 };
        // SAFETY: `values` is a live `struct gpio_v2_line_values`; the
        // kernel fills in `bits` for the lines in `mask`.
        unsafe { gpio_v2_line_get_values(line.as_raw_fd(), &mut values) }
            .map_err(|e| GpioError::Read(e.into()))?;
        Ok(values.bits & 1 == 1)
    }
}

/// A scripted button for tests: records what was asked.
#[cfg(test)]
pub struct FakeGpio {
    pub result: Option<Result<bool, i32>>,
    pub asked: Vec<GpioSpec>,
}

#[cfg(test)]
impl GpioReader for FakeGpio {
    fn is_active(&mut self, spec: &GpioSpec) -> Result<bool, GpioError> {
        self.asked.push(spec.clone());
        match self.result {
            Some(Ok(v)) => Ok(v),
            Some(Err(errno)) => Err(GpioError::Request(io::Error::from_raw_os_error(errno))),
            None => Err(GpioError::Open(io::Error::from_raw_os_error(
                nix::libc::ENOENT,
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let g = GpioSpec::parse("gpiochip1:17").unwrap();
        assert_eq!(
            (g.chip.as_str(), g.line, g.active_low),
            ("/dev/gpiochip1", 17, false)
        );
        assert_eq!(g.to_string(), "gpiochip1:17");
        let g = GpioSpec::parse("0:3:active-low").unwrap();
        assert_eq!(g.chip, "/dev/gpiochip0");
        assert_eq!(g.to_string(), "gpiochip0:3:active-low");
        assert_eq!(GpioSpec::parse("/dev/gpiochip2:0").unwrap().line, 0);
        // Shown as it reads back (fuzz target recovery): `5:3` would be
        // /dev/gpiochip5.
        let g = GpioSpec::parse("/dev/5:3").unwrap();
        assert_eq!(g.to_string(), "/dev/5:3");
        assert_eq!(GpioSpec::parse(&g.to_string()), Ok(g));
        for bad in [
            "",
            ":",
            "gpiochip0",
            "gpiochip0:",
            "gpiochip0:x",
            "gpiochip0:-1",
            "gpiochip0:65536",
            "gpiochip0:1:2",
            "gpiochip0:1:active-low:x",
            "../x:1",
            "/sys/x:1",
            ":3",
            "gpiochip0:99999999999",
        ] {
            assert!(GpioSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_request_asks_for_one_input_line() {
        let r = line_request(&GpioSpec::parse("gpiochip0:5:active-low").unwrap());
        assert_eq!(r.num_lines, 1);
        assert_eq!(r.offsets[0], 5);
        assert_eq!(r.config.flags, FLAG_INPUT | FLAG_ACTIVE_LOW);
        assert_eq!(r.config.num_attrs, 0);
        assert_eq!(&r.consumer[..21], b"overlay-init-failsafe");
        assert_eq!(r.consumer[21], 0, "NUL-terminated");
        let r = line_request(&GpioSpec::parse("gpiochip0:5").unwrap());
        assert_eq!(r.config.flags, FLAG_INPUT);
    }

    #[test]
    fn the_ioctl_numbers_are_the_headers() {
        // _IOWR(0xB4, 0x07, 592 bytes) and _IOWR(0xB4, 0x0E, 16 bytes) on
        // the generic ioctl encoding (arm, x86): dir 3 << 30 | size << 16 |
        // type << 8 | nr.
        let iowr = |nr: u64, size: u64| (3u64 << 30) | (size << 16) | (0xB4 << 8) | nr;
        assert_eq!(iowr(0x07, 592), 0xC250_B407);
        assert_eq!(iowr(0x0E, 16), 0xC010_B40E);
        assert_eq!(
            nix::request_code_readwrite!(0xB4, 0x07, size_of::<LineRequest>()) as u64,
            0xC250_B407
        );
        assert_eq!(
            nix::request_code_readwrite!(0xB4, 0x0E, size_of::<LineValues>()) as u64,
            0xC010_B40E
        );
    }

    #[test]
    fn a_missing_chip_is_an_open_error() {
        let r = LinuxGpio.is_active(&GpioSpec::parse("/dev/gpiochip-none-here:0").unwrap());
        assert!(matches!(r, Err(GpioError::Open(_))), "{r:?}");
    }
}
