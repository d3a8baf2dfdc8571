//! Weighted choice of read answers: `answers` distinct nodes drawn in proportion to
//! weight, or every node in weighted random order.
