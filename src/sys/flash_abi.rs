//! The raw-flash kernel ABI in one place: the MTD and UBI ioctl numbers and the
//! structures they carry, transcribed from the kernel's UAPI headers
//! (`include/uapi/mtd/mtd-abi.h`, `include/uapi/mtd/ubi-user.h`). Only
//! `linux.rs` calls these; the sizes are checked at compile time against the
//! headers, so a typo in a field cannot reach a device.
//!
//! nix builds the request numbers the way `_IOR`/`_IOW` do for the target
//! architecture (the direction bits differ on mips/powerpc/sparc), from the
//! type's `size_of`.

use std::mem::size_of;

// ---------------------------------------------------------------------------
// MTD: include/uapi/mtd/mtd-abi.h
// ---------------------------------------------------------------------------

/// `struct mtd_info_user` (mtd-abi.h): what `MEMGETINFO` fills in.
/// `__u8 type; __u32 flags; __u32 size; __u32 erasesize; __u32 writesize;
/// __u32 oobsize; __u64 padding;`: 32 bytes on every ABI (the `__u64` starts
/// at offset 24, aligned whether `__u64` aligns to 4 or 8).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MtdInfoUser {
    /// `MTD_NORFLASH` (3), `MTD_NANDFLASH` (4), ...
    pub kind: u8,
    /// `MTD_WRITEABLE` (0x400), ...
    pub flags: u32,
    pub size: u32,
    pub erasesize: u32,
    pub writesize: u32,
    pub oobsize: u32,
    /// "Old obsolete field; do not use".
    pub padding: u64,
}
const _: () = assert!(size_of::<MtdInfoUser>() == 32);

/// `struct erase_info_user { __u32 start; __u32 length; }` (mtd-abi.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EraseInfoUser {
    pub start: u32,
    pub length: u32,
}
const _: () = assert!(size_of::<EraseInfoUser>() == 8);

/// `struct erase_info_user64 { __u64 start; __u64 length; }` (mtd-abi.h), for
/// offsets past 4 GiB.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EraseInfoUser64 {
    pub start: u64,
    pub length: u64,
}
const _: () = assert!(size_of::<EraseInfoUser64>() == 16);

/// `MTD_*` device types (mtd-abi.h).
pub const MTD_NANDFLASH: u8 = 4;
pub const MTD_MLCNANDFLASH: u8 = 8;
/// `MTD_WRITEABLE` (mtd-abi.h): "Device is writeable".
pub const MTD_WRITEABLE: u32 = 0x400;

// `#define MEMGETINFO _IOR('M', 1, struct mtd_info_user)`
nix::ioctl_read!(
    /// `ioctl(fd, MEMGETINFO, struct mtd_info_user *)`
    memgetinfo,
    b'M',
    1,
    MtdInfoUser
);
// `#define MEMERASE _IOW('M', 2, struct erase_info_user)`
nix::ioctl_write_ptr!(
    /// `ioctl(fd, MEMERASE, const struct erase_info_user *)`
    memerase,
    b'M',
    2,
    EraseInfoUser
);
// `#define MEMGETBADBLOCK _IOW('M', 11, __kernel_loff_t)`: returns 1 for a bad
// block, 0 for a good one (and 0 on flash without bad blocks, e.g. NOR).
nix::ioctl_write_ptr!(
    /// `ioctl(fd, MEMGETBADBLOCK, const loff_t *)`
    memgetbadblock,
    b'M',
    11,
    i64
);
// `#define MEMERASE64 _IOW('M', 20, struct erase_info_user64)`
nix::ioctl_write_ptr!(
    /// `ioctl(fd, MEMERASE64, const struct erase_info_user64 *)`
    memerase64,
    b'M',
    20,
    EraseInfoUser64
);

// ---------------------------------------------------------------------------
// UBI: include/uapi/mtd/ubi-user.h
// ---------------------------------------------------------------------------

/// `UBI_DEV_NUM_AUTO` / `UBI_VOL_NUM_AUTO` (ubi-user.h): let UBI pick the number.
pub const UBI_DEV_NUM_AUTO: i32 = -1;
pub const UBI_VOL_NUM_AUTO: i32 = -1;
/// `UBI_MAX_VOLUME_NAME` (ubi-user.h): longest volume name, without the NUL.
pub const UBI_MAX_VOLUME_NAME: usize = 127;
/// `UBI_DYNAMIC_VOLUME` (ubi-user.h): a read-write volume (UBIFS needs one).
pub const UBI_DYNAMIC_VOLUME: i8 = 3;

/// `struct ubi_attach_req` (ubi-user.h, Linux ≥ 6.5 spelling):
/// `__s32 ubi_num; __s32 mtd_num; __s32 vid_hdr_offset; __s16 max_beb_per1024;
/// __s8 disable_fm; __s8 need_resv_pool; __s8 padding[8];`: 24 bytes.
/// Older kernels have `disable_fm` + `padding[9]` (4.x–6.4) or `padding[10]`
/// (3.x): the size never changed, and the zeroes we pass mean "default" in all.
/// The kernel writes the new device number back into `ubi_num`
/// (drivers/mtd/ubi/cdev.c `ctrl_cdev_ioctl`: `put_user(err, argp)`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UbiAttachReq {
    pub ubi_num: i32,
    pub mtd_num: i32,
    /// 0: the default VID header offset.
    pub vid_hdr_offset: i32,
    /// 0: the kernel's `CONFIG_MTD_UBI_BEB_LIMIT`.
    pub max_beb_per1024: i16,
    pub disable_fm: i8,
    pub need_resv_pool: i8,
    pub padding: [i8; 8],
}
const _: () = assert!(size_of::<UbiAttachReq>() == 24);

/// `struct ubi_mkvol_req` (ubi-user.h), `__packed`:
/// `__s32 vol_id; __s32 alignment; __s64 bytes; __s8 vol_type; __u8 flags;
/// __s16 name_len; __s8 padding2[4]; char name[UBI_MAX_VOLUME_NAME + 1];`:
/// 152 bytes. `flags` knows only `UBI_VOL_SKIP_CRC_CHECK_FLG` (static
/// volumes); "autoresize" is a volume-table flag set by ubinize, not a mkvol
/// flag, so "all free space" is asked for as a byte count. The kernel checks
/// `strnlen(name, name_len + 1) == name_len` (cdev.c `verify_mkvol_req`) and
/// writes the volume id back into `vol_id`.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct UbiMkvolReq {
    pub vol_id: i32,
    /// 1: use whole logical eraseblocks.
    pub alignment: i32,
    pub bytes: i64,
    pub vol_type: i8,
    pub flags: u8,
    pub name_len: i16,
    pub padding2: [i8; 4],
    pub name: [u8; UBI_MAX_VOLUME_NAME + 1],
}
const _: () = assert!(size_of::<UbiMkvolReq>() == 152);

/// `UBI_MAX_RNVOL` (ubi-user.h): volumes one rename request may name.
pub const UBI_MAX_RNVOL: usize = 32;

/// One entry of `struct ubi_rnvol_req`: `__s32 vol_id; __s16 name_len;
/// __s8 padding2[2]; char name[UBI_MAX_VOLUME_NAME + 1];`: 136 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct UbiRnvolEnt {
    pub vol_id: i32,
    pub name_len: i16,
    pub padding2: [i8; 2],
    pub name: [u8; UBI_MAX_VOLUME_NAME + 1],
}
const _: () = assert!(size_of::<UbiRnvolEnt>() == 136);

/// `struct ubi_rnvol_req` (ubi-user.h), `__packed`: `__s32 count; __s8
/// padding1[12]; struct {...} ents[UBI_MAX_RNVOL];`: 4368 bytes. UBI
/// renames the `count` volumes in one volume-table update (drivers/mtd/ubi/
/// vmt.c `ubi_rename_volumes` → `ubi_vtbl_rename_volumes`): atomic against
/// a power cut, and allowed on a mounted volume (cdev.c opens each one
/// `UBI_METAONLY`).
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct UbiRnvolReq {
    pub count: i32,
    pub padding1: [i8; 12],
    pub ents: [UbiRnvolEnt; UBI_MAX_RNVOL],
}
const _: () = assert!(size_of::<UbiRnvolReq>() == 4368);

// `#define UBI_CTRL_IOC_MAGIC 'o'`
// `#define UBI_IOCATT _IOW(UBI_CTRL_IOC_MAGIC, 64, struct ubi_attach_req)`
nix::ioctl_write_ptr!(
    /// `ioctl(/dev/ubi_ctrl, UBI_IOCATT, struct ubi_attach_req *)`
    ubi_iocatt,
    b'o',
    64,
    UbiAttachReq
);
// `#define UBI_IOC_MAGIC 'o'`
// `#define UBI_IOCMKVOL _IOW(UBI_IOC_MAGIC, 0, struct ubi_mkvol_req)`
nix::ioctl_write_ptr!(
    /// `ioctl(/dev/ubiN, UBI_IOCMKVOL, struct ubi_mkvol_req *)`
    ubi_iocmkvol,
    b'o',
    0,
    UbiMkvolReq
);

// `#define UBI_IOCRNVOL _IOW(UBI_IOC_MAGIC, 3, struct ubi_rnvol_req)`
nix::ioctl_write_ptr!(
    /// `ioctl(/dev/ubiN, UBI_IOCRNVOL, struct ubi_rnvol_req *)`
    ubi_iocrnvol,
    b'o',
    3,
    UbiRnvolReq
);

// `#define UBI_VOL_IOC_MAGIC 'O'`
// `#define UBI_IOCEBUNMAP _IOW(UBI_VOL_IOC_MAGIC, 4, __s32)`
nix::ioctl_write_ptr!(
    /// `ioctl(/dev/ubiN_M, UBI_IOCEBUNMAP, __s32 *lnum)`
    ubi_ioc_ebunmap,
    b'O',
    4,
    i32
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The request numbers as the C headers give them on the usual ioctl
    /// encoding (x86, arm, aarch64, riscv): `_IOW` = 0x4000_0000 | size << 16 |
    /// type << 8 | nr, `_IOR` = 0x8000_0000 | ... Values as mtd-utils and
    /// strace print them.
    #[test]
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "arm",
        target_arch = "aarch64",
        target_arch = "riscv64"
    ))]
    fn request_numbers_match_the_headers() {
        let n = |v| v as u32;
        assert_eq!(
            n(nix::request_code_read!(b'M', 1, size_of::<MtdInfoUser>())),
            0x8020_4d01
        ); // MEMGETINFO
        assert_eq!(
            n(nix::request_code_write!(
                b'M',
                2,
                size_of::<EraseInfoUser>()
            )),
            0x4008_4d02
        ); // MEMERASE
        assert_eq!(
            n(nix::request_code_write!(b'M', 11, size_of::<i64>())),
            0x4008_4d0b
        ); // MEMGETBADBLOCK
        assert_eq!(
            n(nix::request_code_write!(
                b'M',
                20,
                size_of::<EraseInfoUser64>()
            )),
            0x4010_4d14
        ); // MEMERASE64
        assert_eq!(
            n(nix::request_code_write!(
                b'o',
                64,
                size_of::<UbiAttachReq>()
            )),
            0x4018_6f40
        ); // UBI_IOCATT
        assert_eq!(
            n(nix::request_code_write!(b'o', 0, size_of::<UbiMkvolReq>())),
            0x4098_6f00
        ); // UBI_IOCMKVOL
        assert_eq!(
            n(nix::request_code_write!(b'o', 3, size_of::<UbiRnvolReq>())),
            0x5110_6f03
        ); // UBI_IOCRNVOL
        assert_eq!(
            n(nix::request_code_write!(b'O', 4, size_of::<i32>())),
            0x4004_4f04
        ); // UBI_IOCEBUNMAP
    }

    #[test]
    fn field_offsets_match_the_headers() {
        assert_eq!(std::mem::offset_of!(MtdInfoUser, flags), 4);
        assert_eq!(std::mem::offset_of!(MtdInfoUser, oobsize), 20);
        assert_eq!(std::mem::offset_of!(MtdInfoUser, padding), 24);
        assert_eq!(std::mem::offset_of!(UbiAttachReq, max_beb_per1024), 12);
        assert_eq!(std::mem::offset_of!(UbiAttachReq, disable_fm), 14);
        assert_eq!(std::mem::offset_of!(UbiAttachReq, padding), 16);
        assert_eq!(std::mem::offset_of!(UbiMkvolReq, bytes), 8);
        assert_eq!(std::mem::offset_of!(UbiMkvolReq, vol_type), 16);
        assert_eq!(std::mem::offset_of!(UbiMkvolReq, name_len), 18);
        assert_eq!(std::mem::offset_of!(UbiMkvolReq, name), 24);
        assert_eq!(std::mem::offset_of!(UbiRnvolReq, ents), 16);
        assert_eq!(std::mem::offset_of!(UbiRnvolEnt, name_len), 4);
        assert_eq!(std::mem::offset_of!(UbiRnvolEnt, name), 8);
    }
}
