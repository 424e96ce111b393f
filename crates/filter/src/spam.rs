//! Spam scoring: GTUBE, header heuristics and the statistical classifier.
//! PLACEHOLDER: the classifier work replaces this.

use crate::finding::Finding;
use crate::text::MessageText;

#[derive(Debug, Default)]
pub struct SpamChecker {}

impl SpamChecker {
    pub fn check(&self, _msg: &mail_parser::Message<'_>, _text: &MessageText) -> Vec<Finding> {
        Vec::new()
    }
}
