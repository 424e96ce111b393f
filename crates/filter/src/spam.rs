//! Spam scoring: GTUBE, header heuristics and the statistical classifier.
//!
//! Every check gives findings named `spam.*` whose scores add up to the message's spam
//! score; a message at or above [`SPAM_THRESHOLD`] is spam. The heuristics are few and
//! modest: each is a habit of bulk senders that ordinary mail rarely shows, and none can
//! make a message spam alone. The classifier (`spam.bayes`) carries most of the weight:
//! its probability maps onto a score from [`BAYES_BANDS`], so that a probability of 0.6
//! or more is spam on its own, a probability in the unsure band ([`BAYES_UNSURE`], 0.4 to
//! 0.6) needs heuristics worth 1.5 to 3 points to agree, and a hammy message earns a
//! negative score. The newer rules that need no training live in [`crate::heuristics`].
//!
//! The bands and scores were chosen by cross-validation on a public corpus
//! (`portcullis corpus cross-validate`), with the by-source and time-ordered splits as
//! well as random folds, so that mail from senders the model never saw is not flagged.

use std::sync::Arc;

use crate::bayes::{self, BayesModel};
use crate::finding::Finding;
use crate::text::{self, MessageText};

/// The spam score at and above which a message is spam.
pub const SPAM_THRESHOLD: f64 = 5.0;

/// The Generic Test for Unsolicited Bulk Email: a message holding it is spam, always.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// The score of a message holding [`GTUBE`]: beyond anything other findings can undo.
pub const GTUBE_SCORE: f64 = 1000.0;

/// Classifier probability bands: a message whose probability is at least the first value
/// (and below the band above) scores the second.
pub const BAYES_BANDS: [(f64, f64); 8] = [
    (0.99, 6.0),
    (0.90, 5.5),
    (0.60, 5.0),
    (0.50, 3.5),
    (0.40, 2.0),
    (0.20, 0.0),
    (0.01, -1.0),
    (0.0, -2.0),
];

/// The classifier's unsure band: probabilities from the first value up to (not
/// including) the second say the model cannot tell. Their scores (2 and 3.5) leave the
/// decision to the other findings: 1.5 to 3 points of heuristics must agree before such
/// a message is spam, so a sender the model has never seen is not judged on words alone.
pub const BAYES_UNSURE: (f64, f64) = (0.40, 0.60);

/// Whether a classifier probability is in the unsure band.
pub fn bayes_unsure(probability: f64) -> bool {
    (BAYES_UNSURE.0..BAYES_UNSURE.1).contains(&probability)
}

/// The score of a classifier probability (see [`BAYES_BANDS`]).
pub fn bayes_score(probability: f64) -> f64 {
    BAYES_BANDS
        .iter()
        .find(|(min, _)| probability >= *min)
        .map_or(BAYES_BANDS[BAYES_BANDS.len() - 1].1, |(_, s)| *s)
}

/// Scores of the header and body heuristics.
pub mod scores {
    pub const NO_DATE: f64 = 1.0;
    pub const NO_MESSAGE_ID: f64 = 0.5;
    pub const FROM_NAME_ADDRESS: f64 = 1.0;
    pub const UNDISCLOSED_RECIPIENTS: f64 = 1.0;
    pub const PRIORITY_HIGH: f64 = 1.0;
    pub const DATE_SKEW: f64 = 1.5;
    pub const SUBJECT_CAPS: f64 = 1.5;
    pub const BODY_CAPS: f64 = 1.5;
    pub const HTML_ONLY: f64 = 0.5;
    pub const HTML_IMAGE_LITTLE_TEXT: f64 = 1.5;
    pub const URL_IP: f64 = 1.5;
    pub const DECEPTIVE_LINK: f64 = 0.5;
}

/// HTML mail with images and less visible text than this is mostly pictures.
const LITTLE_TEXT: usize = 300;

#[derive(Debug, Clone, Default)]
pub struct SpamChecker {
    bayes: Option<Arc<BayesModel>>,
    /// Domains whose users a From display name must not claim to be
    /// (`spam.impersonation`): the gateway's own.
    protected: Vec<String>,
}

impl SpamChecker {
    /// Heuristics only, no classifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Heuristics and the classifier with this model.
    pub fn with_model(model: Arc<BayesModel>) -> Self {
        SpamChecker {
            bayes: Some(model),
            protected: Vec::new(),
        }
    }

    /// The same checker, guarding these domains against display-name impersonation.
    pub fn protecting(mut self, domains: Vec<String>) -> Self {
        self.protected = domains;
        self
    }

    pub fn model(&self) -> Option<&Arc<BayesModel>> {
        self.bayes.as_ref()
    }

    pub fn check(&self, msg: &mail_parser::Message<'_>, text: &MessageText) -> Vec<Finding> {
        let mut findings = heuristics(msg, text);
        findings.extend(crate::heuristics::check(msg, text, &self.protected));
        // Tokenizing is most of a scan's cost: only when a trained model will use it.
        let ready = self.bayes.as_ref().is_some_and(|m| m.ready().is_ok());
        if ready && let Some(f) = self.bayes_finding(&bayes::tokenize(text)) {
            findings.push(f);
        }
        findings
    }

    /// The classifier's finding for a message's tokens; none without a model or while
    /// the model has not seen enough mail.
    pub fn bayes_finding(&self, tokens: &[String]) -> Option<Finding> {
        let model = self.bayes.as_ref()?;
        let c = model.classify(tokens).ok()?;
        let clues: Vec<String> = c
            .clues
            .iter()
            .take(3)
            .map(|clue| format!("{} {:.2}", clue.token, clue.probability))
            .collect();
        Some(Finding::new(
            "spam.bayes",
            bayes_score(c.probability),
            format!(
                "probability {:.4}{} from {} tokens; strongest: {}",
                c.probability,
                if bayes_unsure(c.probability) {
                    " (unsure)"
                } else {
                    ""
                },
                c.used,
                clues.join(", ")
            ),
        ))
    }
}

/// GTUBE and the header and body heuristics.
pub fn heuristics(msg: &mail_parser::Message<'_>, text: &MessageText) -> Vec<Finding> {
    let mut out = Vec::new();
    if has_gtube(msg, text) {
        out.push(Finding::new(
            "spam.gtube",
            GTUBE_SCORE,
            "the GTUBE test string",
        ));
    }
    if text.header("date").is_none() {
        out.push(Finding::new(
            "spam.no_date",
            scores::NO_DATE,
            "no Date header",
        ));
    }
    if text.header("message-id").is_none() {
        out.push(Finding::new(
            "spam.no_message_id",
            scores::NO_MESSAGE_ID,
            "no Message-ID header",
        ));
    }
    if let Some(detail) = from_name_address(msg) {
        out.push(Finding::new(
            "spam.from_name_address",
            scores::FROM_NAME_ADDRESS,
            detail,
        ));
    }
    if let Some(to) = text.header("to")
        && (to.trim().is_empty() || to.to_ascii_lowercase().contains("undisclosed"))
    {
        out.push(Finding::new(
            "spam.undisclosed_recipients",
            scores::UNDISCLOSED_RECIPIENTS,
            "To names no recipient",
        ));
    }
    if let Some(detail) = high_priority(text) {
        out.push(Finding::new(
            "spam.priority_high",
            scores::PRIORITY_HIGH,
            detail,
        ));
    }
    if let Some(detail) = date_skew(msg) {
        out.push(Finding::new("spam.date_skew", scores::DATE_SKEW, detail));
    }
    if let Some(detail) = body_caps(&text.body) {
        out.push(Finding::new("spam.body_caps", scores::BODY_CAPS, detail));
    }
    if subject_all_caps(&text.subject) {
        out.push(Finding::new(
            "spam.subject_caps",
            scores::SUBJECT_CAPS,
            "subject in capitals",
        ));
    }
    let p = text.parts;
    if p.html_parts > 0 && p.plain_parts == 0 {
        out.push(Finding::new(
            "spam.html_only",
            scores::HTML_ONLY,
            "HTML without a text part",
        ));
    }
    if p.html_images > 0 && p.html_text_bytes < LITTLE_TEXT {
        out.push(Finding::new(
            "spam.html_image_little_text",
            scores::HTML_IMAGE_LITTLE_TEXT,
            format!(
                "{} images, {} bytes of text",
                p.html_images, p.html_text_bytes
            ),
        ));
    }
    if let Some(url) = text
        .urls
        .iter()
        .find(|u| text::url_host(u).is_some_and(text::host_is_ip))
    {
        out.push(Finding::new(
            "spam.url_ip",
            scores::URL_IP,
            format!("link to an IP address: {}", crate::text::cut(url, 80)),
        ));
    }
    if p.deceptive_links > 0 {
        out.push(Finding::new(
            "spam.deceptive_link",
            scores::DECEPTIVE_LINK,
            format!(
                "{} links whose text names another domain",
                p.deceptive_links
            ),
        ));
    }
    out
}

fn has_gtube(msg: &mail_parser::Message<'_>, text: &MessageText) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(GTUBE.as_bytes()));
    let finder = &*FINDER;
    finder.find(text.body.as_bytes()).is_some() || finder.find(msg.raw_message()).is_some()
}

/// A From display name that holds an address at another domain than the real sender
/// (`"support@bank.example" <x@elsewhere.example>`): the reader sees the name.
fn from_name_address(msg: &mail_parser::Message<'_>) -> Option<String> {
    let from = msg.from()?.first()?;
    let name = from.name()?;
    let address = from.address()?;
    let real_domain = address.rsplit_once('@')?.1.to_ascii_lowercase();
    let shown = name
        .split(|c: char| c.is_whitespace() || "<>()\"',;".contains(c))
        .find_map(|w| {
            let (local, domain) = w.rsplit_once('@')?;
            let domain = domain.trim_end_matches('.');
            (!local.is_empty() && domain.contains('.')).then(|| domain.to_ascii_lowercase())
        })?;
    (text::base_domain(&shown) != text::base_domain(&real_domain))
        .then(|| format!("From name shows {shown}, sender is {real_domain}"))
}

/// A message marked urgent (`X-Priority: 1`, `X-MSMail-Priority: High`, `Importance: high`).
fn high_priority(text: &MessageText) -> Option<String> {
    for (name, value) in &text.headers {
        let value = value.trim();
        let urgent = match name.as_str() {
            "x-priority" => value.starts_with('1'),
            "x-msmail-priority" | "importance" | "priority" => {
                value.eq_ignore_ascii_case("high") || value.eq_ignore_ascii_case("urgent")
            }
            _ => false,
        };
        if urgent {
            return Some(format!("{name}: {}", crate::text::cut(value, 40)));
        }
    }
    None
}

/// How far ahead of its receipt a message may be dated (clocks are wrong by hours, not days).
const MAX_DATE_AHEAD: i64 = 24 * 3600;
/// How far behind its receipt a message may be dated (queues retry for days).
const MAX_DATE_BEHIND: i64 = 7 * 24 * 3600;

/// A Date header far from when the message arrived: the latest `Received` time (the
/// gateway's own, or the last hop's when a corpus is read).
fn date_skew(msg: &mail_parser::Message<'_>) -> Option<String> {
    let date = msg.date()?.to_timestamp();
    let received = msg.received()?.date()?.to_timestamp();
    let ahead = date - received;
    if ahead > MAX_DATE_AHEAD {
        Some(format!("dated {} days after receipt", ahead / 86400))
    } else if -ahead > MAX_DATE_BEHIND {
        Some(format!("dated {} days before receipt", -ahead / 86400))
    } else {
        None
    }
}

/// A body of some length written mostly in capitals.
fn body_caps(body: &str) -> Option<String> {
    const READ: usize = 20_000;
    let (mut letters, mut upper) = (0usize, 0usize);
    let head = crate::text::cut(body, READ);
    if head.is_ascii() {
        // Most bodies: counted byte by byte, which the compiler vectorizes; the same
        // counts as the loop over characters below.
        for &b in head.as_bytes() {
            letters += usize::from(b.is_ascii_alphabetic());
            upper += usize::from(b.is_ascii_uppercase());
        }
    } else {
        for c in body.chars().take(READ) {
            if c.is_alphabetic() {
                letters += 1;
                upper += usize::from(c.is_uppercase());
            }
        }
    }
    (letters >= 200 && upper * 100 >= letters * 40)
        .then(|| format!("{}% of the letters are capitals", upper * 100 / letters))
}

/// A subject of at least three words and ten letters, nearly all capitals.
fn subject_all_caps(subject: &str) -> bool {
    let letters = subject.chars().filter(|c| c.is_alphabetic()).count();
    let upper = subject.chars().filter(|c| c.is_uppercase()).count();
    let words = subject.split_whitespace().count();
    words >= 3 && letters >= 10 && upper * 10 >= letters * 9
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::total_score;

    fn check(checker: &SpamChecker, raw: &str) -> Vec<Finding> {
        let msg = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .expect("parse");
        let text = text::extract(&msg);
        checker.check(&msg, &text)
    }

    fn names(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.name.as_str()).collect()
    }

    const PLAIN: &str = "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n\
        Date: Mon, 23 Nov 2026 10:41:02 +0000\r\nMessage-ID: <1@example.com>\r\n\
        Subject: Lunch tomorrow?\r\n\r\nShall we meet at noon?\r\n";

    #[test]
    fn ordinary_mail_has_no_findings() {
        assert!(check(&SpamChecker::new(), PLAIN).is_empty());
    }

    #[test]
    fn gtube_is_always_spam() {
        let raw = PLAIN.replace("Shall we meet at noon?", GTUBE);
        let f = check(&SpamChecker::new(), &raw);
        assert_eq!(names(&f), ["spam.gtube"]);
        assert!(total_score(&f) >= SPAM_THRESHOLD);
        // Also when the body is encoded.
        let raw = "Subject: t\r\nDate: x\r\nMessage-ID: <a@b>\r\n\
            Content-Transfer-Encoding: base64\r\n\r\n\
            WEpTKkM0SkRCUUFETjEuTlNCTjMqMklETkVOKkdUVUJFLVNUQU5EQVJELUFOVEktVUJFLVRFU1QtRU1BSUwqQy4zNFg=\r\n";
        assert!(names(&check(&SpamChecker::new(), raw)).contains(&"spam.gtube"));
    }

    #[test]
    fn header_heuristics() {
        let raw = "From: \"service@bank.example\" <x@elsewhere.example>\r\n\
            Subject: YOU HAVE WON A PRIZE\r\nContent-Type: text/html\r\n\r\n\
            <a href=\"http://192.0.2.7/login\">www.bank.example</a><img src=\"http://a.example/x.gif\">\r\n";
        let f = check(&SpamChecker::new(), raw);
        assert_eq!(
            names(&f),
            [
                "spam.no_date",
                "spam.no_message_id",
                "spam.from_name_address",
                "spam.subject_caps",
                "spam.html_only",
                "spam.html_image_little_text",
                "spam.url_ip",
                "spam.deceptive_link",
            ]
        );
        // Heuristics alone stay modest.
        let sum: f64 = f.iter().map(|f| f.score).sum();
        assert!(sum < 2.0 * SPAM_THRESHOLD);
        // The same domain in the name is fine.
        let raw = PLAIN.replace("Alice <", "\"alice@example.com\" <");
        assert!(check(&SpamChecker::new(), &raw).is_empty());
        assert!(!subject_all_caps("RE: FYI"));
        assert!(subject_all_caps("LOSE 20 POUNDS NOW"));
    }

    #[test]
    fn recipients_priority_dates_and_shouting() {
        let raw = "From: a@example.com\r\nTo: undisclosed-recipients:;\r\n\
            Date: Wed, 07 Oct 2020 23:01:36 -0000\r\nMessage-ID: <1@example.com>\r\n\
            Received: from x by y; Tue, 8 Oct 2002 11:02:37 +0100\r\n\
            X-Priority: 1 (Highest)\r\nSubject: hello\r\n\r\n";
        let body = "BUY THE BEST HERBAL PRODUCTS TODAY, AT PRICES NOBODY CAN BEAT. ".repeat(5);
        let f = check(&SpamChecker::new(), &format!("{raw}{body}\r\n"));
        assert_eq!(
            names(&f),
            [
                "spam.undisclosed_recipients",
                "spam.priority_high",
                "spam.date_skew",
                "spam.body_caps",
            ]
        );
        assert!(f[2].detail.contains("after receipt"));
        // A message dated an hour before it arrived, in ordinary case: nothing.
        let raw = raw
            .replace("undisclosed-recipients:;", "b@example.org")
            .replace("X-Priority: 1 (Highest)", "X-Priority: 3")
            .replace("07 Oct 2020 23:01:36", "08 Oct 2002 09:02:37");
        assert!(
            check(
                &SpamChecker::new(),
                &format!("{raw}{}\r\n", body.to_lowercase())
            )
            .is_empty()
        );
    }

    #[test]
    fn score_bands() {
        assert_eq!(bayes_score(1.0), 6.0);
        assert_eq!(bayes_score(0.995), 6.0);
        assert_eq!(bayes_score(0.5), 3.5);
        // The unsure band never makes spam alone, and needs at most 3 points to.
        for p in [0.40, 0.45, 0.5, 0.59] {
            assert!(bayes_unsure(p));
            assert!(bayes_score(p) < SPAM_THRESHOLD && bayes_score(p) >= SPAM_THRESHOLD - 3.0);
        }
        assert!(!bayes_unsure(0.6) && !bayes_unsure(0.39));
        assert_eq!(bayes_score(0.3), 0.0);
        assert!(bayes_score(0.6) >= SPAM_THRESHOLD);
        assert!(bayes_score(0.59) < SPAM_THRESHOLD);
        assert_eq!(bayes_score(0.0), -2.0);
        assert_eq!(bayes_score(0.005), -2.0);
        let mut last = f64::MIN;
        for i in 0..=1000 {
            let s = bayes_score(f64::from(i) / 1000.0);
            assert!(s >= last, "monotonic");
            last = s;
        }
    }

    #[test]
    fn bayes_finding_needs_a_trained_model() {
        let tokens = vec!["cheap".to_string()];
        assert!(SpamChecker::new().bayes_finding(&tokens).is_none());
        let untrained = SpamChecker::with_model(Arc::new(BayesModel::new()));
        assert!(untrained.bayes_finding(&tokens).is_none());
        let mut model = BayesModel::new();
        for i in 0..60 {
            model.train(&[format!("s{i}"), "cheap".to_string()], true);
            model.train(&[format!("h{i}"), "hello".to_string()], false);
        }
        let f = SpamChecker::with_model(Arc::new(model))
            .bayes_finding(&tokens)
            .expect("finding");
        assert_eq!(f.name, "spam.bayes");
        assert!(f.score > 0.0);
        assert!(f.detail.contains("probability") && f.detail.contains("cheap"));
    }
}
