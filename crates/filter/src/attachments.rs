//! Attachment facts: what every attachment is, also inside archives.
//!
//! [`facts`] walks the parsed message once: every MIME part that is an attachment (also
//! the parts of attached `message/rfc822` messages) gives one [`AttachmentFact`], and so
//! does every member of an attached zip archive (also of zips within zips, and of
//! zip-based documents such as `.docx`). A fact records the names, the declared and the
//! detected (magic bytes) type, and flags: executable, double extension, Office macros,
//! encrypted, type mismatch, archive bomb. [`findings`] turns the flags into findings
//! (`attachment.executable`, …) that the rules act on.
//!
//! Archives are opened within [`AttachmentLimits`]: nesting depth, member count, total
//! bytes decompressed per message and compression ratio. Exceeding one marks the archive
//! `archive_bomb` and stops the work there (an attached message nested deeper than the
//! depth limit is marked the same way, not skipped in silence); nothing is ever decompressed beyond the
//! limits, and a member's content is kept in memory only when it has to be looked into
//! (a nested zip or an OLE document), otherwise only its first bytes are.
//!
//! A message without attachments costs a walk over its part list.

use crate::finding::Finding;
use mail_parser::{Message, MessagePart, MimeHeaders, PartType};
use memchr::memmem;
use serde::{Deserialize, Serialize};
use std::io::{Cursor, Read};

/// Finding names.
pub const EXECUTABLE: &str = "attachment.executable";
pub const DOUBLE_EXTENSION: &str = "attachment.double_extension";
pub const MACRO: &str = "attachment.macro";
pub const ENCRYPTED: &str = "attachment.encrypted";
pub const ARCHIVE_BOMB: &str = "attachment.archive_bomb";
pub const TYPE_MISMATCH: &str = "attachment.type_mismatch";

/// Extensions that run code when opened on a usual desktop (or mount something that
/// does). Lower case, without the dot.
pub const RISKY_EXTENSIONS: &[&str] = &[
    "exe",
    "scr",
    "com",
    "pif",
    "bat",
    "cmd",
    "js",
    "jse",
    "vbs",
    "vbe",
    "wsf",
    "wsh",
    "wsc",
    "hta",
    "msi",
    "msp",
    "mst",
    "lnk",
    "iso",
    "img",
    "vhd",
    "vhdx",
    "ps1",
    "psm1",
    "psd1",
    "jar",
    "cpl",
    "dll",
    "ocx",
    "sys",
    "reg",
    "scf",
    "sct",
    "chm",
    "msc",
    "gadget",
    "application",
    "appx",
    "appxbundle",
    "msix",
    "msixbundle",
    "xll",
    "url",
    "inf",
    "ade",
    "adp",
    "mde",
    "ins",
    "isp",
    "mshta",
    "settingcontent-ms",
    "library-ms",
    "search-ms",
    "appref-ms",
];

/// Extensions a sender uses as the decoy in `invoice.pdf.exe`.
const DECOY_EXTENSIONS: &[&str] = &[
    "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "rtf", "txt", "csv", "jpg",
    "jpeg", "png", "gif", "bmp", "tif", "tiff", "mp3", "mp4", "wav", "avi", "mov", "zip", "rar",
    "7z", "htm", "html", "xml", "eml", "msg",
];

/// Facts about one attachment (or one member of an archive).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttachmentFact {
    /// File name as declared (Content-Disposition filename or Content-Type name), or the
    /// archive member path.
    pub filename: String,
    /// Last extension, lower case, without the dot (`exe`); empty when none.
    pub extension: String,
    /// Declared MIME type, lower case (`application/pdf`); empty for archive members.
    pub declared_type: String,
    /// Type detected from the content's magic bytes, when known.
    pub detected_type: Option<String>,
    /// Size in bytes: decoded size of a MIME part; for a member, its uncompressed size as
    /// declared by the archive or as read, whichever is larger.
    pub size: u64,
    /// 0 for a MIME part, 1 for a member of an attached archive, and so on.
    pub depth: u32,
    /// The names of the enclosing attachment and archives, outermost first (empty for a
    /// MIME part). `["a.zip", "b.zip"]` for `b.zip` inside `a.zip`.
    pub container: Vec<String>,
    /// 0 for the message's own parts, 1 inside an attached `message/rfc822`, and so on.
    pub message_depth: u32,
    /// `invoice.pdf.exe`: a decoy extension followed by a risky one (or a right-to-left
    /// override character in the name).
    pub double_extension: bool,
    /// Executable magic (PE/DOS `MZ`, ELF, Mach-O) or a risky extension.
    pub executable: bool,
    /// Office macros: an OOXML zip with `vbaProject.bin` (or Excel 4 macro sheets), an OLE
    /// document with a VBA project or macro storage.
    pub macros: bool,
    /// An encrypted archive member, or an encrypted (password-protected) Office document.
    pub encrypted: bool,
    /// The content is a zip archive (including zip-based documents) that was looked into,
    /// or would have been but for the limits.
    pub archive: bool,
    /// This archive exceeded a limit (depth, members, total bytes, compression ratio):
    /// its members were not all examined. Also an attached message nested deeper than
    /// `max_depth`, whose parts were not examined.
    pub archive_bomb: bool,
    /// The detected type contradicts the extension or the declared type.
    pub type_mismatch: bool,
}

impl AttachmentFact {
    /// The name of the MIME attachment this fact belongs to: the file name of a MIME
    /// part, the outermost container's name for an archive member (what to strip).
    pub fn attachment_name(&self) -> &str {
        self.container.first().unwrap_or(&self.filename)
    }

    /// `a.zip/b.zip/evil.exe` for a member, the file name for a MIME part.
    pub fn path(&self) -> String {
        if self.container.is_empty() {
            return self.filename.clone();
        }
        let mut p = self.container.join("/");
        p.push('/');
        p.push_str(&self.filename);
        p
    }
}

/// Bounds on the work spent on one message's attachments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttachmentLimits {
    /// Deepest archive nesting looked into: members of an attached zip are at depth 1; a
    /// zip found at this depth is not opened and is flagged `archive_bomb`.
    pub max_depth: u32,
    /// Archive members listed per message, all archives together.
    pub max_members: u32,
    /// Bytes decompressed per message, all archives together.
    pub max_total_bytes: u64,
    /// Largest uncompressed/compressed ratio of a member. Applies to members above 1 MiB
    /// only: small files compress well without being bombs.
    pub max_ratio: u32,
}

impl Default for AttachmentLimits {
    fn default() -> Self {
        AttachmentLimits {
            max_depth: 4,
            max_members: 1000,
            max_total_bytes: 64 << 20,
            max_ratio: 100,
        }
    }
}

/// Below this many uncompressed bytes a member is never a ratio bomb.
const RATIO_FLOOR: u64 = 1 << 20;
/// Bytes of a member kept for type detection when its whole content is not needed.
const HEAD: usize = 64 * 1024;
/// Bytes read from a member at a time.
const READ_CHUNK: usize = 16 * 1024;
/// At most this many findings of one name per message (a jar of 500 classes is one
/// story, not 500).
const MAX_FINDINGS_PER_NAME: usize = 20;

const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// The facts of every attachment of a parsed message.
pub fn facts(msg: &Message<'_>, limits: &AttachmentLimits) -> Vec<AttachmentFact> {
    let mut walk = Walk::new(limits);
    walk.message(msg, 0);
    walk.out
}

/// The facts of one file given as bytes (an attachment outside a parsed message): the
/// file itself first, then its archive members.
pub fn facts_of_file(
    filename: &str,
    declared_type: &str,
    data: &[u8],
    limits: &AttachmentLimits,
) -> Vec<AttachmentFact> {
    let mut walk = Walk::new(limits);
    let fact = new_fact(
        filename,
        declared_type.to_ascii_lowercase(),
        0,
        Vec::new(),
        0,
    );
    walk.inspect(fact, data, data.len() as u64, true);
    walk.out
}

/// The notable facts as findings (score 0: the rules act on them), detail = the file's
/// path (`a.zip/evil.exe`).
pub fn findings(facts: &[AttachmentFact]) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    let mut counts = [0usize; 6];
    for f in facts {
        let flags = [
            (f.executable, EXECUTABLE),
            (f.double_extension, DOUBLE_EXTENSION),
            (f.macros, MACRO),
            (f.encrypted, ENCRYPTED),
            (f.archive_bomb, ARCHIVE_BOMB),
            (f.type_mismatch, TYPE_MISMATCH),
        ];
        for (i, (set, name)) in flags.into_iter().enumerate() {
            if !set || counts[i] >= MAX_FINDINGS_PER_NAME {
                continue;
            }
            let detail = f.path();
            if out.iter().any(|o| o.name == name && o.detail == detail) {
                continue;
            }
            counts[i] += 1;
            out.push(Finding::new(name, 0.0, detail));
        }
    }
    out
}

struct Walk<'l> {
    limits: &'l AttachmentLimits,
    /// Archive members listed so far.
    members: u32,
    /// Bytes decompressed so far.
    inflated: u64,
    out: Vec<AttachmentFact>,
}

impl<'l> Walk<'l> {
    fn new(limits: &'l AttachmentLimits) -> Self {
        Walk {
            limits,
            members: 0,
            inflated: 0,
            out: Vec::new(),
        }
    }

    fn message(&mut self, msg: &Message<'_>, message_depth: u32) {
        for (i, part) in msg.parts.iter().enumerate() {
            if matches!(part.body, PartType::Multipart(_)) {
                continue;
            }
            let listed = u32::try_from(i).is_ok_and(|i| msg.attachments.binary_search(&i).is_ok());
            let name = part.attachment_name();
            if !listed && name.is_none() {
                continue;
            }
            let name = name.unwrap_or_default();
            let declared = declared_type(part);
            match &part.body {
                PartType::Message(inner) => {
                    let mut fact = new_fact(name, declared, 0, Vec::new(), message_depth);
                    fact.size = inner.raw_message.len() as u64;
                    // Past the depth limit the attached message is not looked into: it is
                    // flagged as an archive nested too deep is, so that what it may hold is
                    // not let through unseen.
                    let open = message_depth < self.limits.max_depth;
                    fact.archive_bomb = !open;
                    self.out.push(fact);
                    if open {
                        self.message(inner, message_depth + 1);
                    }
                }
                _ => {
                    let data = part.contents();
                    let fact = new_fact(name, declared, 0, Vec::new(), message_depth);
                    self.inspect(fact, data, data.len() as u64, true);
                }
            }
        }
    }

    /// Fills in the content facts of `fact` from `data` (the whole content when
    /// `complete`, else its first bytes), records it, and opens it when it is a zip.
    fn inspect(&mut self, mut fact: AttachmentFact, data: &[u8], size: u64, complete: bool) {
        fact.size = fact.size.max(size);
        fact.detected_type = infer::get(data).map(|t| t.mime_type().to_string());
        fact.executable =
            executable_magic(data) || RISKY_EXTENSIONS.contains(&fact.extension.as_str());
        fact.type_mismatch = type_mismatch(
            &fact.extension,
            &fact.declared_type,
            fact.detected_type.as_deref(),
        );
        if complete && data.starts_with(OLE_MAGIC) {
            fact.macros |= ole_has_macros(data);
            fact.encrypted |= ole_has_entry(data, "EncryptedPackage");
        }
        let looks_zip = zip_magic(data) || ZIP_EXTENSIONS.contains(&fact.extension.as_str());
        let index = self.out.len();
        self.out.push(fact);
        if looks_zip && complete {
            self.open_zip(index, data);
        }
    }

    fn flag_bomb(&mut self, index: usize) {
        self.out[index].archive_bomb = true;
    }

    /// Lists and examines the members of the zip whose fact is `self.out[index]`.
    fn open_zip(&mut self, index: usize, data: &[u8]) {
        let Ok(mut zip) = zip::ZipArchive::new(Cursor::new(data)) else {
            return; // not a readable zip: the fact keeps what magic bytes said
        };
        self.out[index].archive = true;
        let depth = self.out[index].depth;
        if depth >= self.limits.max_depth {
            self.flag_bomb(index);
            return;
        }
        let message_depth = self.out[index].message_depth;
        let mut container = self.out[index].container.clone();
        container.push(self.out[index].filename.clone());

        for i in 0..zip.len() {
            if self.members >= self.limits.max_members {
                self.flag_bomb(index);
                return;
            }
            // Metadata first, without decompressing anything.
            let (name, encrypted, size, compressed, is_file) = match zip.by_index_raw(i) {
                Ok(f) => (
                    f.name()
                        .map(|n| n.into_owned())
                        .unwrap_or_else(|_| String::from_utf8_lossy(f.name_raw()).into_owned()),
                    f.encrypted(),
                    f.size(),
                    f.compressed_size(),
                    f.is_file(),
                ),
                Err(_) => continue,
            };
            if !is_file {
                continue;
            }
            self.members += 1;
            if is_ooxml_macro_member(&name) {
                self.out[index].macros = true;
            }
            let mut member = new_fact(
                &name,
                String::new(),
                depth + 1,
                container.clone(),
                message_depth,
            );
            member.size = size;
            member.encrypted = encrypted;
            if encrypted {
                self.record_unread(member);
                continue;
            }
            if self.ratio_exceeded(size, compressed) {
                self.flag_bomb(index);
                self.record_unread(member);
                continue;
            }
            let budget = self.limits.max_total_bytes.saturating_sub(self.inflated);
            if budget == 0 {
                self.flag_bomb(index);
                self.record_unread(member);
                return;
            }
            let Ok(reader) = zip.by_index(i) else {
                // An unsupported compression method or a damaged entry.
                self.record_unread(member);
                continue;
            };
            let read = read_member(reader, budget, compressed, self.limits.max_ratio);
            self.inflated = self.inflated.saturating_add(read.total);
            if read.bomb {
                self.flag_bomb(index);
            }
            let complete = read.complete;
            self.inspect(member, &read.data, read.total, complete);
            if read.bomb && self.inflated >= self.limits.max_total_bytes {
                return;
            }
        }
    }

    /// A member whose content was not read: only its name speaks.
    fn record_unread(&mut self, mut member: AttachmentFact) {
        member.executable = RISKY_EXTENSIONS.contains(&member.extension.as_str());
        self.out.push(member);
    }

    fn ratio_exceeded(&self, uncompressed: u64, compressed: u64) -> bool {
        uncompressed > RATIO_FLOOR
            && uncompressed > compressed.saturating_mul(u64::from(self.limits.max_ratio))
    }
}

struct MemberRead {
    /// The whole content when `complete`, else its first bytes.
    data: Vec<u8>,
    /// Bytes decompressed.
    total: u64,
    complete: bool,
    /// A limit stopped the reading.
    bomb: bool,
}

/// Decompresses one member, never more than `budget + 1` bytes, stopping as soon as the
/// output outgrows `max_ratio` times the compressed size. Keeps everything only when the
/// content needs looking into (zip, OLE), else only the first [`HEAD`] bytes.
fn read_member(reader: impl Read, budget: u64, compressed: u64, max_ratio: u32) -> MemberRead {
    let mut reader = reader.take(budget.saturating_add(1));
    let ratio_limit = compressed
        .saturating_mul(u64::from(max_ratio))
        .max(RATIO_FLOOR);
    let mut chunk = [0u8; READ_CHUNK];
    let mut data = Vec::new();
    let mut total = 0u64;
    let mut bomb = false;
    let mut broken = false;
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                broken = true;
                break;
            }
        };
        total += n as u64;
        if data.len() < HEAD || needs_whole(&data) {
            data.extend_from_slice(&chunk[..n]);
        }
        if total > budget || total > ratio_limit {
            bomb = true;
            break;
        }
    }
    let complete = !bomb && !broken && data.len() as u64 == total;
    MemberRead {
        data,
        total,
        complete,
        bomb,
    }
}

/// Content that is looked into as a whole: archives and OLE documents.
fn needs_whole(head: &[u8]) -> bool {
    zip_magic(head) || head.starts_with(OLE_MAGIC)
}

fn zip_magic(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06")
}

/// Extensions of zip-based files, tried as zips even without the magic at offset 0
/// (self-extracting or prefixed archives).
const ZIP_EXTENSIONS: &[&str] = &[
    "zip", "jar", "docx", "docm", "dotx", "dotm", "xlsx", "xlsm", "xltx", "xltm", "xlam", "pptx",
    "pptm", "potx", "potm", "ppsx", "ppsm", "ppam", "odt", "ods", "odp", "odg", "epub", "apk",
];

fn is_ooxml_macro_member(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with("vbaproject.bin") || lower.contains("/macrosheets/")
}

fn new_fact(
    filename: &str,
    declared_type: String,
    depth: u32,
    container: Vec<String>,
    message_depth: u32,
) -> AttachmentFact {
    AttachmentFact {
        extension: extension(filename),
        double_extension: double_extension(filename),
        filename: filename.to_string(),
        declared_type,
        depth,
        container,
        message_depth,
        ..AttachmentFact::default()
    }
}

fn declared_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        // RFC 2045 default; a part without a type inside multipart/digest is a message,
        // which mail-parser reports as PartType::Message anyway.
        None => match part.body {
            PartType::Message(_) => "message/rfc822".into(),
            _ => "text/plain".into(),
        },
    }
}

/// The last component of a path (`/` or `\` separated).
fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Trailing dots and spaces are dropped by Windows and so hide nothing.
fn trimmed_name(path: &str) -> &str {
    base_name(path).trim_end_matches(|c: char| c == '.' || c.is_whitespace())
}

fn extension(path: &str) -> String {
    match trimmed_name(path).rsplit_once('.') {
        Some((_, ext)) => ext.trim().to_lowercase(),
        None => String::new(),
    }
}

fn double_extension(path: &str) -> bool {
    // U+202E RIGHT-TO-LEFT OVERRIDE shows "invoice\u{202E}fdp.exe" as "invoiceexe.pdf".
    if path.contains('\u{202E}') {
        return true;
    }
    let mut parts = trimmed_name(path).rsplit('.');
    let (Some(last), Some(decoy), Some(stem)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if stem.trim().is_empty() && parts.next().is_none() {
        return false; // ".pdf.exe": no stem before the decoy
    }
    let last = last.trim().to_lowercase();
    let decoy = decoy.trim().to_lowercase();
    RISKY_EXTENSIONS.contains(&last.as_str()) && DECOY_EXTENSIONS.contains(&decoy.as_str())
}

fn executable_magic(data: &[u8]) -> bool {
    const MAGICS: &[&[u8]] = &[
        b"MZ",                     // DOS / PE
        b"\x7fELF",                // ELF
        &[0xFE, 0xED, 0xFA, 0xCE], // Mach-O 32, big-endian
        &[0xFE, 0xED, 0xFA, 0xCF], // Mach-O 64, big-endian
        &[0xCE, 0xFA, 0xED, 0xFE], // Mach-O 32, little-endian
        &[0xCF, 0xFA, 0xED, 0xFE], // Mach-O 64, little-endian
    ];
    MAGICS.iter().any(|m| data.starts_with(m))
}

/// Does an OLE compound file hold a VBA project or Word's macro storage?
fn ole_has_macros(data: &[u8]) -> bool {
    ["_VBA_PROJECT", "_VBA_PROJECT_CUR", "Macros"]
        .iter()
        .any(|name| ole_has_entry(data, name))
}

/// Does an OLE compound file have a directory entry named `name`? Directory entries are
/// 128 bytes, 128-aligned in the file; each starts with the name in UTF-16LE (NUL
/// terminated, zero padded to 64 bytes) followed by the name's byte length with the NUL.
fn ole_has_entry(data: &[u8], name: &str) -> bool {
    let mut pattern: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    pattern.extend_from_slice(&[0, 0]);
    let name_len = pattern.len();
    if name_len > 64 {
        return false;
    }
    memmem::find_iter(data, &pattern).any(|pos| {
        pos % 128 == 0
            && data
                .get(pos + 64..pos + 66)
                .is_some_and(|l| usize::from(u16::from_le_bytes([l[0], l[1]])) == name_len)
    })
}

/// Coarse kinds of content, fine enough to tell an executable from a picture and coarse
/// enough that `.jpg` holding a PNG or `.doc` holding a `.docx` is no mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Media,
    Pdf,
    /// Zip and zip-based formats (OOXML, ODF, jar, epub).
    Zip,
    /// Microsoft Office, either generation; only ever expected, never detected.
    Office,
    /// OLE compound files (old Office, msi, msg).
    Ole,
    Executable,
    /// Other archives and compressed files.
    Archive,
    Rtf,
    Text,
}

fn kind_of_extension(ext: &str) -> Option<Kind> {
    Some(match ext {
        "jpg" | "jpeg" | "jpe" | "jfif" | "png" | "gif" | "bmp" | "tif" | "tiff" | "webp"
        | "heic" | "heif" | "ico" | "avif" => Kind::Image,
        "mp3" | "wav" | "ogg" | "oga" | "flac" | "m4a" | "aac" | "mp4" | "m4v" | "mov" | "avi"
        | "mkv" | "webm" | "wmv" | "wma" | "3gp" | "mpg" | "mpeg" => Kind::Media,
        "pdf" => Kind::Pdf,
        "zip" | "jar" | "apk" | "epub" | "xpi" | "odt" | "ods" | "odp" | "odg" => Kind::Zip,
        "doc" | "dot" | "docx" | "docm" | "dotx" | "dotm" | "xls" | "xlt" | "xlsx" | "xlsm"
        | "xltx" | "xltm" | "xlsb" | "xlam" | "ppt" | "pot" | "pps" | "pptx" | "pptm" | "potx"
        | "ppsx" | "ppsm" => Kind::Office,
        "msi" | "msg" => Kind::Ole,
        "exe" | "dll" | "scr" | "cpl" | "sys" | "ocx" => Kind::Executable,
        "rar" | "7z" | "gz" | "tgz" | "bz2" | "xz" | "tar" | "cab" | "zst" | "lz" | "cpio"
        | "rpm" | "deb" => Kind::Archive,
        "rtf" => Kind::Rtf,
        "txt" | "csv" | "htm" | "html" | "xml" | "json" | "log" => Kind::Text,
        _ => return None,
    })
}

/// The kind a declared MIME type promises; `None` for generic or unknown types.
fn kind_of_declared(mime: &str) -> Option<Kind> {
    if mime == "image/svg+xml" {
        return None; // XML text, no magic
    }
    if mime.starts_with("image/") {
        return Some(Kind::Image);
    }
    if mime.starts_with("audio/") || mime.starts_with("video/") {
        return Some(Kind::Media);
    }
    if mime.starts_with("application/vnd.openxmlformats-officedocument.")
        || mime.starts_with("application/vnd.ms-word")
        || mime.starts_with("application/vnd.ms-excel")
        || mime.starts_with("application/vnd.ms-powerpoint")
        || mime == "application/msword"
    {
        return Some(Kind::Office);
    }
    if mime.starts_with("application/vnd.oasis.opendocument.") {
        return Some(Kind::Zip);
    }
    Some(match mime {
        "application/pdf" => Kind::Pdf,
        "application/zip"
        | "application/x-zip-compressed"
        | "application/x-zip"
        | "application/java-archive"
        | "application/epub+zip" => Kind::Zip,
        "application/x-msdownload"
        | "application/x-msdos-program"
        | "application/x-dosexec"
        | "application/vnd.microsoft.portable-executable" => Kind::Executable,
        "application/vnd.rar"
        | "application/x-rar-compressed"
        | "application/x-7z-compressed"
        | "application/gzip"
        | "application/x-gzip"
        | "application/x-tar"
        | "application/x-bzip2"
        | "application/x-xz" => Kind::Archive,
        "application/rtf" | "text/rtf" => Kind::Rtf,
        "text/plain" | "text/csv" | "text/html" | "text/xml" => Kind::Text,
        _ => return None,
    })
}

/// The kind of a type detected by `infer`.
fn kind_of_detected(mime: &str) -> Option<Kind> {
    if mime.starts_with("image/") {
        return Some(Kind::Image);
    }
    if mime.starts_with("audio/") || mime.starts_with("video/") {
        return Some(Kind::Media);
    }
    if mime.starts_with("text/") {
        return Some(Kind::Text);
    }
    if mime.starts_with("application/vnd.openxmlformats-officedocument.")
        || mime.starts_with("application/vnd.oasis.opendocument.")
    {
        return Some(Kind::Zip);
    }
    Some(match mime {
        "application/pdf" => Kind::Pdf,
        "application/zip"
        | "application/epub+zip"
        | "application/java-archive"
        | "application/vnd.android.package-archive" => Kind::Zip,
        "application/msword"
        | "application/vnd.ms-excel"
        | "application/vnd.ms-powerpoint"
        | "application/x-ole-storage" => Kind::Ole,
        "application/vnd.microsoft.portable-executable"
        | "application/x-executable"
        | "application/x-mach-binary"
        | "application/x-msdownload" => Kind::Executable,
        "application/vnd.rar"
        | "application/x-7z-compressed"
        | "application/gzip"
        | "application/x-xz"
        | "application/x-bzip2"
        | "application/x-tar"
        | "application/vnd.ms-cab-compressed"
        | "application/zstd"
        | "application/x-lzip"
        | "application/x-compress"
        | "application/x-cpio"
        | "application/x-rpm"
        | "application/vnd.debian.binary-package" => Kind::Archive,
        "application/rtf" => Kind::Rtf,
        _ => return None,
    })
}

fn compatible(expected: Kind, detected: Kind) -> bool {
    expected == detected
        // Office files come as OLE or zip, and Word/Excel open RTF, HTML and CSV saved
        // under their extensions (a common export format).
        || expected == Kind::Office
            && matches!(detected, Kind::Ole | Kind::Zip | Kind::Rtf | Kind::Text)
}

fn type_mismatch(extension: &str, declared: &str, detected: Option<&str>) -> bool {
    let Some(detected) = detected.and_then(kind_of_detected) else {
        return false;
    };
    let by_extension = kind_of_extension(extension).is_some_and(|k| !compatible(k, detected));
    let by_declared = kind_of_declared(declared).is_some_and(|k| !compatible(k, detected));
    by_extension || by_declared
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    fn limits() -> AttachmentLimits {
        AttachmentLimits::default()
    }

    /// A zip of (name, content) pairs, deflated.
    fn make_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, content) in files {
            w.start_file(*name, opts).unwrap();
            w.write_all(content).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// A multipart/mixed message with a text body and these base64 attachments
    /// (name, content type, content).
    fn mime(attachments: &[(&str, &str, &[u8])]) -> Vec<u8> {
        let mut m = String::from(
            "From: a@example.org\r\nTo: b@example.net\r\nSubject: files\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"XXB\"\r\n\r\n--XXB\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n",
        );
        for (name, ctype, content) in attachments {
            let b64 = base64::engine::general_purpose::STANDARD.encode(content);
            m.push_str(&format!(
                "--XXB\r\nContent-Type: {ctype}; name=\"{name}\"\r\n\
                 Content-Disposition: attachment; filename=\"{name}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n"
            ));
            for line in b64.as_bytes().chunks(76) {
                m.push_str(std::str::from_utf8(line).unwrap());
                m.push_str("\r\n");
            }
        }
        m.push_str("--XXB--\r\n");
        m.into_bytes()
    }

    fn facts_of(raw: &[u8]) -> Vec<AttachmentFact> {
        let msg = mail_parser::MessageParser::default().parse(raw).unwrap();
        facts(&msg, &limits())
    }

    fn find<'a>(facts: &'a [AttachmentFact], name: &str) -> &'a AttachmentFact {
        facts
            .iter()
            .find(|f| f.filename == name)
            .unwrap_or_else(|| panic!("no fact for {name} in {facts:#?}"))
    }

    fn names(findings: &[Finding]) -> Vec<(&str, &str)> {
        findings
            .iter()
            .map(|f| (f.name.as_str(), f.detail.as_str()))
            .collect()
    }

    fn fake_pe() -> Vec<u8> {
        let mut pe = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
        pe.resize(512, 0);
        pe
    }

    #[test]
    fn plain_message_has_no_facts() {
        let raw = b"From: a@example.org\r\nSubject: hi\r\n\r\nJust text.\r\n";
        assert!(facts_of(raw).is_empty());
        let raw = b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\n";
        assert!(facts_of(raw).is_empty());
    }

    #[test]
    fn ordinary_attachments_are_unremarkable() {
        let pdf = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n";
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";
        let raw = mime(&[
            ("report.pdf", "application/pdf", pdf),
            ("photo.jpg", "image/jpeg", png),
            ("notes.txt", "text/plain", b"plain words\n"),
            ("data.bin", "application/octet-stream", b"\x01\x02\x03"),
        ]);
        let facts = facts_of(&raw);
        assert_eq!(facts.len(), 4, "{facts:#?}");
        let pdf_len = pdf.len() as u64;
        let pdf = find(&facts, "report.pdf");
        assert_eq!(pdf.extension, "pdf");
        assert_eq!(pdf.declared_type, "application/pdf");
        assert_eq!(pdf.detected_type.as_deref(), Some("application/pdf"));
        assert_eq!(pdf.size, pdf_len);
        assert_eq!(pdf.depth, 0);
        // A PNG named .jpg is the same kind of thing: no mismatch.
        assert_eq!(
            find(&facts, "photo.jpg").detected_type.as_deref(),
            Some("image/png")
        );
        assert!(findings(&facts).is_empty(), "{:?}", findings(&facts));
    }

    #[test]
    fn executable_double_extension_and_mismatch() {
        let pe = fake_pe();
        let raw = mime(&[
            ("invoice.pdf.exe", "application/octet-stream", &pe),
            ("invoice.pdf", "application/pdf", &pe),
            ("run.js", "application/javascript", b"WScript.Echo(1)"),
        ]);
        let facts = facts_of(&raw);
        let f = find(&facts, "invoice.pdf.exe");
        assert!(f.executable && f.double_extension);
        assert_eq!(f.extension, "exe");
        assert!(!f.type_mismatch, "exe content in a .exe is honest");
        let f = find(&facts, "invoice.pdf");
        assert!(f.executable, "MZ magic");
        assert!(f.type_mismatch, "{f:#?}");
        assert!(!f.double_extension);
        assert!(find(&facts, "run.js").executable);
        let found = findings(&facts);
        let n = names(&found);
        assert!(n.contains(&(EXECUTABLE, "invoice.pdf.exe")));
        assert!(n.contains(&(DOUBLE_EXTENSION, "invoice.pdf.exe")));
        assert!(n.contains(&(EXECUTABLE, "invoice.pdf")));
        assert!(n.contains(&(TYPE_MISMATCH, "invoice.pdf")));
        assert!(n.contains(&(EXECUTABLE, "run.js")));
        assert!(found.iter().all(|f| f.score == 0.0));
    }

    #[test]
    fn file_names() {
        assert_eq!(extension("a/b/Report.PDF"), "pdf");
        assert_eq!(extension("noext"), "");
        assert_eq!(extension("evil.exe. . "), "exe");
        assert!(double_extension("invoice.pdf.exe"));
        assert!(double_extension("Invoice.PDF   .Scr"));
        assert!(double_extension("dir/photo.jpg.js"));
        assert!(double_extension("invoice\u{202E}fdp.exe"));
        assert!(!double_extension("archive.tar.gz"));
        assert!(!double_extension("setup.1.2.exe"));
        assert!(!double_extension("report.pdf"));
        assert!(!double_extension(".pdf.exe"));
    }

    #[test]
    fn zip_members_and_nested_zip() {
        let pe = fake_pe();
        let inner = make_zip(&[("deep/payload.exe", &pe), ("readme.txt", b"hello")]);
        let outer = make_zip(&[("inner.zip", &inner), ("doc.pdf", b"%PDF-1.4\n")]);
        let raw = mime(&[("files.zip", "application/zip", &outer)]);
        let facts = facts_of(&raw);
        let z = find(&facts, "files.zip");
        assert!(z.archive && !z.archive_bomb);
        assert_eq!(z.detected_type.as_deref(), Some("application/zip"));
        let i = find(&facts, "inner.zip");
        assert_eq!(i.depth, 1);
        assert!(i.archive);
        assert_eq!(i.container, vec!["files.zip".to_string()]);
        let p = find(&facts, "deep/payload.exe");
        assert_eq!(p.depth, 2);
        assert_eq!(
            p.container,
            vec!["files.zip".to_string(), "inner.zip".to_string()]
        );
        assert!(p.executable);
        assert_eq!(p.size, 512);
        assert_eq!(p.path(), "files.zip/inner.zip/deep/payload.exe");
        assert_eq!(p.attachment_name(), "files.zip");
        assert_eq!(z.attachment_name(), "files.zip");
        assert_eq!(
            find(&facts, "doc.pdf").detected_type.as_deref(),
            Some("application/pdf")
        );
        let found = findings(&facts);
        assert_eq!(
            names(&found),
            vec![(EXECUTABLE, "files.zip/inner.zip/deep/payload.exe")]
        );
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_flagged() {
        let mut z = make_zip(&[("core.txt", b"x")]);
        for level in 0..6 {
            z = make_zip(&[(&format!("level{level}.zip"), &z)]);
        }
        let facts = facts_of_file("top.zip", "application/zip", &z, &limits());
        assert!(facts.iter().all(|f| f.depth <= 4), "{facts:#?}");
        let bombs: Vec<_> = facts.iter().filter(|f| f.archive_bomb).collect();
        assert_eq!(bombs.len(), 1);
        assert_eq!(bombs[0].depth, 4);
        assert!(findings(&facts).iter().any(|f| f.name == ARCHIVE_BOMB));
    }

    /// Sets the "encrypted" general purpose flag on every entry of a zip, in the local
    /// headers and the central directory (the zip crate does not write ZipCrypto).
    fn mark_encrypted(zip: &mut [u8]) {
        let mut i = 0;
        while i + 4 <= zip.len() {
            match &zip[i..i + 4] {
                b"PK\x03\x04" => zip[i + 6] |= 1,
                b"PK\x01\x02" => zip[i + 8] |= 1,
                _ => {}
            }
            i += 1;
        }
    }

    #[test]
    fn encrypted_member() {
        let mut z = make_zip(&[("secret.pdf", b"%PDF-1.4 not really encrypted\n")]);
        mark_encrypted(&mut z);
        let raw = mime(&[("locked.zip", "application/zip", &z)]);
        let facts = facts_of(&raw);
        let m = find(&facts, "secret.pdf");
        assert!(m.encrypted);
        assert_eq!(m.detected_type, None, "encrypted content is not read");
        assert!(names(&findings(&facts)).contains(&(ENCRYPTED, "locked.zip/secret.pdf")));
    }

    #[test]
    fn office_macros_in_ooxml() {
        let mut vba = OLE_MAGIC.to_vec();
        vba.resize(64, 0);
        let docm = make_zip(&[
            ("[Content_Types].xml", b"<?xml version=\"1.0\"?><Types/>"),
            ("word/document.xml", b"<?xml version=\"1.0\"?><w:document/>"),
            ("word/vbaProject.bin", &vba),
        ]);
        let docx = make_zip(&[
            ("[Content_Types].xml", b"<?xml version=\"1.0\"?><Types/>"),
            ("word/document.xml", b"<?xml version=\"1.0\"?><w:document/>"),
        ]);
        let raw = mime(&[
            (
                "order.docm",
                "application/vnd.ms-word.document.macroEnabled.12",
                &docm,
            ),
            (
                "letter.docx",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                &docx,
            ),
        ]);
        let facts = facts_of(&raw);
        let m = find(&facts, "order.docm");
        assert!(m.macros && m.archive && !m.type_mismatch, "{m:#?}");
        let d = find(&facts, "letter.docx");
        assert!(!d.macros && !d.type_mismatch, "{d:#?}");
        assert_eq!(names(&findings(&facts)), vec![(MACRO, "order.docm")]);
    }

    /// A minimal OLE compound file: the header sector, then one directory sector whose
    /// entries carry the given names.
    fn fake_ole(entries: &[&str]) -> Vec<u8> {
        let mut f = OLE_MAGIC.to_vec();
        f.resize(512, 0);
        for name in entries {
            let mut entry: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
            entry.extend_from_slice(&[0, 0]);
            let len = entry.len() as u16;
            entry.resize(64, 0);
            entry.extend_from_slice(&len.to_le_bytes());
            entry.resize(128, 0);
            f.extend_from_slice(&entry);
        }
        f.resize(1024, 0);
        f
    }

    #[test]
    fn ole_macros_and_encryption() {
        let with_macros = fake_ole(&["Root Entry", "WordDocument", "Macros", "VBA"]);
        let plain = fake_ole(&["Root Entry", "WordDocument"]);
        let encrypted = fake_ole(&["Root Entry", "EncryptionInfo", "EncryptedPackage"]);
        // "Macros" as document text (not an aligned directory entry) does not count.
        let mut text = plain.clone();
        let word: Vec<u8> = "Macros\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        text[800..800 + word.len()].copy_from_slice(&word);
        let raw = mime(&[
            ("old.doc", "application/msword", &with_macros),
            ("clean.doc", "application/msword", &plain),
            ("text.doc", "application/msword", &text),
            (
                "locked.docx",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                &encrypted,
            ),
        ]);
        let facts = facts_of(&raw);
        assert!(find(&facts, "old.doc").macros);
        assert!(!find(&facts, "clean.doc").macros);
        assert!(!find(&facts, "text.doc").macros);
        let l = find(&facts, "locked.docx");
        assert!(l.encrypted && !l.type_mismatch, "{l:#?}");
    }

    #[test]
    fn zip_bomb_is_stopped() {
        // 50 MB of zeros deflate to about 50 kB: a ratio near 1000.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        w.start_file("zeros.bin", opts).unwrap();
        let block = vec![0u8; 1 << 20];
        for _ in 0..50 {
            w.write_all(&block).unwrap();
        }
        w.start_file("after.exe", opts).unwrap();
        w.write_all(&fake_pe()).unwrap();
        let bomb = w.finish().unwrap().into_inner();
        assert!(bomb.len() < 200_000);

        let start = std::time::Instant::now();
        let facts = facts_of_file("bomb.zip", "application/zip", &bomb, &limits());
        let z = find(&facts, "bomb.zip");
        assert!(z.archive_bomb, "{facts:#?}");
        let zeros = find(&facts, "zeros.bin");
        assert_eq!(zeros.size, 50 << 20, "declared size is reported");
        // The members after the bomb are still listed.
        assert!(find(&facts, "after.exe").executable);
        assert!(names(&findings(&facts)).contains(&(ARCHIVE_BOMB, "bomb.zip")));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn lying_sizes_do_not_unlock_more_work() {
        // Same bomb, but the archive claims the member is small: the declared-size check
        // passes, and reading must still stop early.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        w.start_file("zeros.bin", opts).unwrap();
        let block = vec![0u8; 1 << 20];
        for _ in 0..50 {
            w.write_all(&block).unwrap();
        }
        let mut bomb = w.finish().unwrap().into_inner();
        let claimed: u32 = 4096;
        let mut i = 0;
        while i + 4 <= bomb.len() {
            match &bomb[i..i + 4] {
                b"PK\x03\x04" => bomb[i + 22..i + 26].copy_from_slice(&claimed.to_le_bytes()),
                b"PK\x01\x02" => bomb[i + 24..i + 28].copy_from_slice(&claimed.to_le_bytes()),
                _ => {}
            }
            i += 1;
        }
        let facts = facts_of_file("liar.zip", "application/zip", &bomb, &limits());
        let zeros = find(&facts, "zeros.bin");
        assert!(
            zeros.size < 10 << 20,
            "reading stopped early: {}",
            zeros.size
        );
    }

    /// The reading guard itself, whatever the archive declares: a stream of 50 MB from
    /// 50 kB of input is cut at the ratio limit, keeping only its head in memory.
    #[test]
    fn reading_stops_at_the_ratio_limit() {
        let endless = std::io::repeat(0).take(50 << 20);
        let read = read_member(endless, 64 << 20, 50_000, 100);
        assert!(read.bomb && !read.complete);
        assert!(
            read.total <= 5_000_000 + READ_CHUNK as u64,
            "{}",
            read.total
        );
        assert!(read.data.len() <= HEAD + READ_CHUNK);
        // And at the byte budget.
        let read = read_member(std::io::repeat(0).take(50 << 20), 2 << 20, 10 << 20, 100);
        assert!(read.bomb);
        assert!(read.total <= (2 << 20) + 1);
        // A member within both limits is read whole.
        let read = read_member(&b"PK\x03\x04rest"[..], 1000, 10, 100);
        assert!(!read.bomb && read.complete);
        assert_eq!(read.data, b"PK\x03\x04rest");
    }

    #[test]
    fn total_and_member_limits() {
        let big = vec![b'a'; 300_000];
        let z = make_zip(&[
            ("a.txt", &big),
            ("b.txt", &big),
            ("c.txt", &big),
            ("d.txt", &big),
        ]);
        let small = AttachmentLimits {
            max_total_bytes: 500_000,
            ..AttachmentLimits::default()
        };
        let facts = facts_of_file("big.zip", "application/zip", &z, &small);
        assert!(find(&facts, "big.zip").archive_bomb);
        let few = AttachmentLimits {
            max_members: 2,
            ..AttachmentLimits::default()
        };
        let facts = facts_of_file("big.zip", "application/zip", &z, &few);
        assert!(find(&facts, "big.zip").archive_bomb);
        assert_eq!(facts.len(), 3, "{facts:#?}");
        let facts = facts_of_file("big.zip", "application/zip", &z, &limits());
        assert!(!find(&facts, "big.zip").archive_bomb);
        assert_eq!(facts.len(), 5);
    }

    #[test]
    fn attached_message_parts_are_included() {
        let pe = fake_pe();
        let inner =
            String::from_utf8(mime(&[("tool.exe", "application/octet-stream", &pe)])).unwrap();
        let raw = format!(
            "From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\n\
             --OUT\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n\
             --OUT\r\nContent-Type: message/rfc822; name=\"fwd.eml\"\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\n\
             {inner}\r\n--OUT--\r\n"
        );
        let facts = facts_of(raw.as_bytes());
        let m = find(&facts, "fwd.eml");
        assert_eq!(m.declared_type, "message/rfc822");
        assert_eq!(m.message_depth, 0);
        let t = find(&facts, "tool.exe");
        assert_eq!(t.message_depth, 1);
        assert!(t.executable);
        assert!(!m.archive_bomb);
    }

    #[test]
    fn attached_messages_deeper_than_the_limit_are_flagged() {
        let pe = fake_pe();
        let mut raw =
            String::from_utf8(mime(&[("tool.exe", "application/octet-stream", &pe)])).unwrap();
        let wrappers = limits().max_depth + 1;
        for i in 0..wrappers {
            raw = format!(
                "From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"W{i}\"\r\n\r\n\
                 --W{i}\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n\
                 --W{i}\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd{i}.eml\"\r\n\r\n\
                 {raw}\r\n--W{i}--\r\n"
            );
        }
        let facts = facts_of(raw.as_bytes());
        // The executable is past the limit and not seen; the message holding it says so.
        assert!(facts.iter().all(|f| f.filename != "tool.exe"), "{facts:#?}");
        let innermost = find(&facts, "fwd0.eml");
        assert_eq!(innermost.message_depth, limits().max_depth);
        assert!(innermost.archive_bomb);
        assert!(!find(&facts, "fwd1.eml").archive_bomb);
        assert!(names(&findings(&facts)).contains(&(ARCHIVE_BOMB, "fwd0.eml")));
    }

    #[test]
    fn findings_are_capped_and_deduplicated() {
        let pe = fake_pe();
        let files: Vec<(String, Vec<u8>)> =
            (0..50).map(|i| (format!("x{i}.exe"), pe.clone())).collect();
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_slice()))
            .collect();
        let z = make_zip(&refs);
        let facts = facts_of_file("many.zip", "application/zip", &z, &limits());
        assert_eq!(facts.len(), 51);
        let found = findings(&facts);
        assert_eq!(
            found.iter().filter(|f| f.name == EXECUTABLE).count(),
            MAX_FINDINGS_PER_NAME
        );
        let twice = [facts[1].clone(), facts[1].clone()];
        assert_eq!(findings(&twice).len(), 1);
    }
}
