//! Attachment facts: every part, also inside archives.
//! PLACEHOLDER: the attachment work replaces this.

use crate::finding::Finding;
use serde::{Deserialize, Serialize};

/// Facts about one attachment (or one member of an archive).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachmentFact {
    /// File name as declared (Content-Disposition filename or Content-Type name), or the
    /// archive member path.
    pub filename: String,
    /// Last extension, lower case, without the dot (`exe`); empty when none.
    pub extension: String,
    /// Declared MIME type, lower case (`application/pdf`).
    pub declared_type: String,
    /// Type detected from the content's magic bytes, when known.
    pub detected_type: Option<String>,
    pub size: u64,
    /// 0 for a MIME part, 1 for a member of an attached archive, and so on.
    pub depth: u32,
}

#[derive(Debug, Clone)]
pub struct AttachmentLimits {
    pub max_depth: u32,
}

impl Default for AttachmentLimits {
    fn default() -> Self {
        AttachmentLimits { max_depth: 4 }
    }
}

pub fn facts(_msg: &mail_parser::Message<'_>, _limits: &AttachmentLimits) -> Vec<AttachmentFact> {
    Vec::new()
}

pub fn findings(_facts: &[AttachmentFact]) -> Vec<Finding> {
    Vec::new()
}
