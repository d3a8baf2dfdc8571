//! The response encoder: header, the question echoed byte for byte, the answers (owner
//! written as a pointer to the question name, so its case is echoed and no bytes are
//! spent on it), authority and additional records, and our OPT; fitted to the client's
//! size. hickory-proto encodes the record data.
//!
//! Fitting (UDP, or anything over 65,535 bytes): when the whole response does not fit,
//! the additional section is cut first (the additional records that fit stay, in order:
//! the addresses of the first SRV targets; no TC, RFC 2181 §9); when the answers and
//! authority still do not fit, the answers that fit are kept with TC set and nothing
//! after them.

use std::borrow::Cow;

use hickory_proto::rr::{RData, Record};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::dns::ecs::ClientSubnet;

/// The header fields of a response (QR is always set, RA and AD never).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub id: u16,
    /// The request's opcode, echoed.
    pub opcode: u8,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub cd: bool,
    /// The 12-bit rcode: the low 4 bits go in the header, the rest in the OPT.
    pub rcode: u16,
}

/// Our OPT record (RFC 6891), version 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt<'a> {
    /// The UDP payload size we accept.
    pub payload: u16,
    /// The NSID option's data, when the client asked for it.
    pub nsid: Option<&'a [u8]>,
    /// The client's ECS option to echo, with our SCOPE PREFIX-LENGTH.
    pub ecs: Option<(ClientSubnet, u8)>,
}

impl Opt<'_> {
    fn rdlen(&self) -> usize {
        self.nsid.map_or(0, |n| 4 + n.len()) + self.ecs.map_or(0, |(e, _)| e.wire_len())
    }

    /// The record's length on the wire.
    pub fn wire_len(&self) -> usize {
        11 + self.rdlen()
    }

    /// Appends the record; `rcode`'s high 8 bits are its extended rcode.
    pub fn write(&self, out: &mut Vec<u8>, rcode: u16) {
        let rdlen = self.rdlen() as u16;
        out.push(0); // root owner
        out.extend_from_slice(&41u16.to_be_bytes());
        out.extend_from_slice(&self.payload.to_be_bytes());
        out.push((rcode >> 4) as u8); // extended rcode
        out.push(0); // version
        out.extend_from_slice(&[0, 0]); // flags
        out.extend_from_slice(&rdlen.to_be_bytes());
        if let Some(nsid) = self.nsid {
            out.extend_from_slice(&3u16.to_be_bytes());
            out.extend_from_slice(&(nsid.len() as u16).to_be_bytes());
            out.extend_from_slice(nsid);
        }
        if let Some((ecs, scope)) = self.ecs {
            ecs.write(out, scope);
        }
    }
}

/// One answer record; its owner is the question name.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerRr<'z> {
    pub ttl: u32,
    pub data: Cow<'z, RData>,
}

/// The records of a response.
#[derive(Debug, Default)]
pub struct Body<'z> {
    pub answers: Vec<AnswerRr<'z>>,
    /// The zone SOA, in the authority section.
    pub soa: Option<&'z Record>,
    pub additional: Vec<&'z Record>,
}

/// The question section as the client sent it, and how many questions it holds.
#[derive(Debug, Clone, Copy)]
pub struct Question<'p> {
    pub bytes: &'p [u8],
    pub count: u16,
}

impl Question<'_> {
    pub const NONE: Question<'static> = Question { bytes: &[], count: 0 };
}

/// Largest DNS message (TCP's length prefix is 16 bits).
pub const MAX_MESSAGE: usize = u16::MAX as usize;

/// Offset of the question name, the target of every answer owner pointer.
const QUESTION_NAME: u16 = 0xC000 | 12;

/// Encodes a response into `out` (cleared first), at most `limit` bytes long when
/// anything was to be dropped. Answers need a question with exactly one name.
pub fn encode(
    out: &mut Vec<u8>,
    mut head: Head,
    mut question: Question<'_>,
    body: &Body<'_>,
    opt: Option<Opt<'_>>,
    limit: usize,
) {
    let budget = limit.min(MAX_MESSAGE).saturating_sub(opt.map_or(0, |o| o.wire_len()));
    if 12 + question.bytes.len() > budget {
        // Only a message of many questions gets here (one is at most 259 bytes): it is
        // answered without them, truncated.
        (question, head.tc) = (Question::NONE, true);
    }
    out.clear();
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(question.bytes);
    let answers = if question.count == 1 { &body.answers[..] } else { &[] };
    let mut ends = Vec::with_capacity(answers.len() + 2);
    // Compression compares bytes: the records' names (lower case) are matched against
    // the question lower-cased, then the client's case is put back, so the response is
    // the same whatever case the question had (which the fast path relies on).
    let asked = QUESTION_START..QUESTION_START + question.bytes.len();
    out[asked.clone()].make_ascii_lowercase();
    let complete = emit_records(out, question, answers, body, budget, &mut ends);
    out[asked].copy_from_slice(question.bytes);
    let (an, soa, ar) = (answers.len(), usize::from(body.soa.is_some()), body.additional.len());
    let total = ends.last().copied().unwrap_or(out.len());
    let (keep_an, keep_ns, keep_ar) = if complete && total <= budget {
        (an, soa, ar)
    } else if ends.len() >= an + soa && end_of(&ends, an + soa, question) <= budget {
        let written = ends.len() - an - soa;
        let fits = (0..=ar.min(written)).rev().find(|&k| end_of(&ends, an + soa + k, question) <= budget);
        (an, soa, fits.unwrap_or(0))
    } else {
        head.tc = true;
        let fits = (0..=an.min(ends.len())).rev().find(|&k| end_of(&ends, k, question) <= budget).unwrap_or(0);
        (fits, 0, 0)
    };
    out.truncate(end_of(&ends, keep_an + keep_ns + keep_ar, question));
    if let Some(opt) = opt {
        opt.write(out, head.rcode);
    }
    let counts = [question.count, keep_an as u16, keep_ns as u16, (keep_ar + usize::from(opt.is_some())) as u16];
    write_header(out, head, counts);
}

/// Where the response ends after its first `records` records.
fn end_of(ends: &[usize], records: usize, question: Question<'_>) -> usize {
    match records {
        0 => 12 + question.bytes.len(),
        n => ends[n - 1],
    }
}

/// Appends every record, noting where each ends; stops after the first that ends past
/// `budget` (nothing after it can be kept) or cannot be encoded (over 65,535 bytes).
/// Returns whether all were written. Names in the records
/// (the SOA's owner, NS targets, glue and SRV target owners) are compressed against the
/// question name's suffixes too, as the peers do: the apex after an in-zone question
/// is a 2-byte pointer.
fn emit_records(
    out: &mut Vec<u8>,
    question: Question<'_>,
    answers: &[AnswerRr<'_>],
    body: &Body<'_>,
    budget: usize,
    ends: &mut Vec<usize>,
) -> bool {
    let start = out.len();
    let mut enc = BinEncoder::with_offset(out, start as u32);
    if question.count >= 1 {
        register_question_name(&mut enc, question.bytes);
    }
    for rr in answers {
        if emit_answer(&mut enc, rr).is_err() {
            return false;
        }
        ends.push(enc.offset());
        if enc.offset() > budget {
            return false;
        }
    }
    for record in body.soa.into_iter().chain(body.additional.iter().copied()) {
        if record.emit(&mut enc).is_err() {
            return false;
        }
        ends.push(enc.offset());
        if enc.offset() > budget {
            return false;
        }
    }
    true
}

/// Offers every suffix of the first question name (at offset 12) to the encoder's
/// compression table, as hickory-proto stores a name it wrote itself: each label's start
/// and the name's end, root label excluded. A name holding a pointer is not offered.
fn register_question_name(enc: &mut BinEncoder<'_>, section: &[u8]) {
    let mut starts = Vec::with_capacity(8);
    let mut at = 0usize;
    loop {
        match section.get(at) {
            Some(0) => break,
            Some(&len) if len & 0xC0 == 0 && at + 1 + usize::from(len) < section.len() => {
                starts.push(at);
                at += 1 + usize::from(len);
            }
            _ => return, // a pointer, or a truncated name: nothing offered
        }
    }
    for label in starts {
        enc.store_label_pointer(QUESTION_START + label, QUESTION_START + at);
    }
}

/// Offset of the question section.
const QUESTION_START: usize = 12;

fn emit_answer(enc: &mut BinEncoder<'_>, rr: &AnswerRr<'_>) -> Result<(), hickory_proto::ProtoError> {
    enc.emit_u16(QUESTION_NAME)?;
    enc.emit_u16(u16::from(rr.data.record_type()))?;
    enc.emit_u16(1)?; // IN
    enc.emit_u32(rr.ttl)?;
    let place = enc.place::<u16>()?;
    rr.data.emit(enc)?;
    let len = enc.len_since_place(&place);
    place.replace(enc, u16::try_from(len).unwrap_or(u16::MAX))
}

fn write_header(out: &mut [u8], head: Head, counts: [u16; 4]) {
    out[0..2].copy_from_slice(&head.id.to_be_bytes());
    out[2] = 0x80 | (head.opcode & 0x0F) << 3 | u8::from(head.aa) << 2 | u8::from(head.tc) << 1 | u8::from(head.rd);
    out[3] = u8::from(head.cd) << 4 | (head.rcode & 0x0F) as u8;
    for (i, count) in counts.iter().enumerate() {
        out[4 + 2 * i..6 + 2 * i].copy_from_slice(&count.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::{A, TXT};
    use hickory_proto::rr::Name;
    use std::net::Ipv4Addr;

    /// `WrItE.db.internal. IN A` as a client writes it.
    fn question() -> Vec<u8> {
        let mut q = Vec::new();
        for label in ["WrItE", "db", "internal"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    fn a(n: u8) -> AnswerRr<'static> {
        AnswerRr { ttl: 1, data: Cow::Owned(RData::A(A(Ipv4Addr::new(10, 0, 0, n)))) }
    }

    fn glue() -> Record {
        Record::from_rdata(Name::from_ascii("ns1.db.internal.").unwrap(), 1, RData::A(A(Ipv4Addr::LOCALHOST)))
    }

    fn head() -> Head {
        Head { id: 0xBEEF, aa: true, rd: true, ..Head::default() }
    }

    fn lines(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn answers_echo_the_question_and_parse_back() {
        let q = question();
        let g = glue();
        let body = Body { answers: vec![a(1), a(2)], soa: None, additional: vec![&g] };
        let mut out = Vec::new();
        let opt = Opt { payload: 1232, nsid: Some(b"lagdns-a"), ecs: None };
        encode(&mut out, head(), Question { bytes: &q, count: 1 }, &body, Some(opt), 512);
        assert_eq!(&out[12..12 + q.len()], &q[..], "question echoed byte for byte");
        let m = Message::from_vec(&out).unwrap();
        assert_eq!((m.metadata.id, m.metadata.authoritative, m.metadata.truncation), (0xBEEF, true, false));
        assert!(m.metadata.recursion_desired && !m.metadata.recursion_available);
        let answers: Vec<String> = m.answers.iter().map(|r| r.to_string()).collect();
        assert_eq!(answers, ["WrItE.db.internal. 1 IN A 10.0.0.1", "WrItE.db.internal. 1 IN A 10.0.0.2"]);
        assert_eq!(m.additionals.len(), 1);
        let edns = m.edns.unwrap();
        assert_eq!(edns.max_payload(), 1232);
        assert!(edns.option(hickory_proto::rr::rdata::opt::EdnsCode::NSID).is_some());
    }

    #[test]
    fn fitting_cuts_the_additional_section_first_then_truncates_answers() {
        let q = question();
        let g = glue();
        let g2 = Record::from_rdata(Name::from_ascii("ns2.db.internal.").unwrap(), 1, RData::A(A(Ipv4Addr::BROADCAST)));
        let answers: Vec<_> = (1..=40).map(a).collect();
        let body = Body { answers, soa: None, additional: vec![&g, &g2] };
        let mut out = Vec::new();
        // Everything: 12 + 23 + 40 × 16 + 20 + 20 = 715 bytes (both owners end in a
        // pointer to the question's db.internal).
        encode(&mut out, head(), Question { bytes: &q, count: 1 }, &body, None, 715);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!((m.answers.len(), m.additionals.len(), m.metadata.truncation), (40, 2, false));
        // One byte short: the second additional record goes, the first stays.
        encode(&mut out, head(), Question { bytes: &q, count: 1 }, &body, None, 714);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!((m.answers.len(), m.additionals.len(), m.metadata.truncation), (40, 1, false));
        assert_eq!(lines(&m.additionals), ["ns1.db.internal. 1 IN A 127.0.0.1"]);
        assert_eq!(out.len(), 695);
        encode(&mut out, head(), Question { bytes: &q, count: 1 }, &body, None, 694);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!((m.answers.len(), m.additionals.len(), m.metadata.truncation), (40, 0, false));
        assert_eq!(out.len(), 675);
        encode(&mut out, head(), Question { bytes: &q, count: 1 }, &body, None, 512);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!((m.answers.len(), m.additionals.len(), m.metadata.truncation), (29, 0, true));
        assert!(out.len() <= 512, "{}", out.len());
    }

    #[test]
    fn record_names_point_into_the_question_name() {
        // the SOA of an NXDOMAIN: its owner db.internal. is a pointer to the question's
        // "db" label (offset 12 + 6), and its MNAME/RNAME end in pointers too
        let q = question();
        let soa = Record::from_rdata(
            Name::from_ascii("db.internal.").unwrap(),
            1,
            RData::SOA(hickory_proto::rr::rdata::SOA::new(
                Name::from_ascii("ns1.db.internal.").unwrap(),
                Name::from_ascii("hostmaster.db.internal.").unwrap(),
                7,
                3600,
                600,
                86400,
                1,
            )),
        );
        let body = Body { answers: vec![], soa: Some(&soa), additional: vec![] };
        let mut out = Vec::new();
        encode(&mut out, head(), Question { bytes: &q, count: 1 }, &body, None, 512);
        let at = 12 + q.len();
        assert_eq!(&out[at..at + 2], &[0xC0, 18], "the owner is a pointer to db.internal in the question");
        // owner 2 + fixed 10 + ns1 4 + 2 + hostmaster 11 + 2 + 20 = 51 bytes
        assert_eq!(out.len(), at + 51);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(lines(&m.authorities), [soa.to_string()]);
        // a question name holding a pointer is not offered (no pointer into a pointer)
        let pointed = [vec![5], b"WrItE".to_vec(), vec![0xC0, 12, 0, 1, 0, 1]].concat();
        encode(&mut out, head(), Question { bytes: &pointed, count: 1 }, &body, None, 512);
        let at = 12 + pointed.len();
        assert_eq!(out[at], 2, "db.internal. written in full");
    }

    #[test]
    fn nothing_past_65535_bytes_even_over_tcp() {
        let q = question();
        let long = RData::TXT(TXT::new(vec!["x".repeat(255); 4]));
        let answers = (0..100).map(|_| AnswerRr { ttl: 1, data: Cow::Borrowed(&long) }).collect();
        let body = Body { answers, soa: None, additional: vec![] };
        let mut out = Vec::new();
        encode(&mut out, head(), Question { bytes: &q, count: 1 }, &body, None, MAX_MESSAGE);
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation && m.answers.len() == 63, "{}", m.answers.len());
    }

    #[test]
    fn a_question_section_that_cannot_fit_is_dropped_and_truncated() {
        // found by fuzzing: 258 empty questions (root, type 0) in one FORMERR'd query
        let many = [0u8; 5 * 258];
        let mut out = Vec::new();
        let h = Head { id: 3, rcode: 1, ..Head::default() };
        encode(&mut out, h, Question { bytes: &many, count: 258 }, &Body::default(), None, 512);
        let m = Message::from_vec(&out).unwrap();
        assert!(m.queries.is_empty() && m.metadata.truncation && out.len() == 12);
        encode(&mut out, h, Question { bytes: &many, count: 258 }, &Body::default(), None, MAX_MESSAGE);
        assert_eq!(Message::from_vec(&out).unwrap().queries.len(), 258, "over TCP they fit");
    }

    #[test]
    fn errors_carry_the_extended_rcode_in_the_opt() {
        let mut out = Vec::new();
        let h = Head { id: 7, rcode: 16, ..Head::default() };
        encode(&mut out, h, Question::NONE, &Body::default(), Some(Opt { payload: 512, nsid: None, ecs: None }), 512);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(u16::from(m.metadata.response_code), 16, "BADVERS");
        assert_eq!(out.len(), 12 + 11);
        let h = Head { id: 7, opcode: 5, rcode: 4, ..Head::default() };
        encode(&mut out, h, Question::NONE, &Body::default(), None, 512);
        assert_eq!(out, [0, 7, 0x80 | 5 << 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
