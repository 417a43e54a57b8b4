package audit

import "fmt"

// walker checks a journal line by line against the chain rules (package
// doc) and records the first fault, and any notes, in its scanned Report.
type walker struct {
	s       *scanned
	cp      *Checkpoint // nil if none or unreadable
	headErr error       // why the head file did not decode

	expect   uint64 // the sequence number the next line must have
	prev     Digest // the hash the next line's prev must equal
	firstSeq uint64 // seq of line 1, if it decoded
	prefix   bool   // reading entries the checkpoint covers (an interrupted prune)
	accepted int    // entries that passed every check
	lastPrev Digest // Prev of the last accepted entry
	// headOnChain: an accepted entry is the one the head file records (a
	// head behind the journal is then a batch whose head update a crash
	// cut off).
	headOnChain bool

	// A gap looks like deletion until a missing entry turns up further
	// down; then it was reordering.
	gapFrom, gapTo uint64
	gapLine        int
}

func (w *walker) fail(f Fault, seq uint64, line int, format string, args ...any) {
	if s := w.s; s.Fault == "" {
		s.Fault, s.FirstBad, s.Line = f, seq, line
		s.Problem = fmt.Sprintf(format, args...)
	}
}

func (w *walker) note(format string, args ...any) {
	w.s.Notes = append(w.s.Notes, fmt.Sprintf(format, args...))
}

// line takes complete line num, which ends at offset end; err is set for a
// line too long to read.
func (w *walker) line(num int, end int64, raw []byte, err error) {
	s := w.s
	s.Entries++
	var e Entry
	if err == nil {
		e, err = parseLine(raw)
	}
	edited := err == nil && e.sum() != e.Hash
	s.last = nil
	if err == nil && !edited {
		s.last = &e
	}
	if num == 1 && err == nil {
		w.firstSeq = e.Seq
	}
	if s.Fault != "" {
		if s.last != nil && w.gapTo != 0 && e.Seq >= w.gapFrom && e.Seq <= w.gapTo {
			s.Fault = FaultReordered
			s.Problem = fmt.Sprintf("line %d holds entry %d where entry %d belongs, and entry %d is at line %d: entries were reordered",
				w.gapLine, w.gapTo+1, w.gapFrom, e.Seq, num)
			w.gapTo = 0
		}
		return
	}
	switch {
	case err != nil:
		w.fail(FaultMalformed, w.expect, num, "line %d is not a valid entry: %v", num, err)
		return
	case edited:
		seq := w.expect
		if num == 1 && w.cp != nil {
			seq = e.Seq
		}
		w.fail(FaultEdited, seq, num, "line %d (entry %d): its contents do not match its hash: the entry was edited", num, e.Seq)
		return
	}
	if num == 1 && !w.first(num, e) || num > 1 && !w.next(num, e) {
		return
	}
	w.expect, w.prev, w.lastPrev = e.Seq+1, e.Hash, e.Prev
	if h := s.head; h != nil && h.Seq == e.Seq && h.Hash == e.Hash || h != nil && h.Seq == 0 && h.Hash.IsZero() && e.Seq == 1 {
		w.headOnChain = true
	}
	w.accepted++
	s.LastSeq, s.LastHash = e.Seq, e.Hash
	if w.prefix && e.Seq == w.cp.Seq {
		w.endPrefix(num, end, e)
	}
}

// first checks how line 1 starts the chain: at entry 1, or right after the
// checkpoint, or (an interrupted prune) at or before it.
func (w *walker) first(num int, e Entry) bool {
	cp := w.cp
	switch {
	case cp == nil && e.Seq != 1:
		w.fail(FaultDeleted, 1, num, "the journal starts at entry %d and there is no checkpoint: %s deleted, or the checkpoint file was",
			e.Seq, span(1, e.Seq-1))
	case cp == nil && !e.Prev.IsZero():
		w.fail(FaultEdited, 1, num, "entry 1 links to a previous entry, but the first entry links to nothing: it was rewritten")
	case cp == nil:
		return true
	case e.Seq <= cp.Seq:
		w.prefix = true // its prev is the hash of an entry pruned earlier: unknowable
		return true
	case e.Seq > cp.Seq+1:
		w.fail(FaultDeleted, cp.Seq+1, num, "%s missing right after the checkpoint (deleted)", span(cp.Seq+1, e.Seq-1))
	case e.Prev != cp.Hash:
		w.fail(FaultCheckpoint, e.Seq, num, "entry %d does not link to the checkpoint (entry %d, hash %s): the checkpoint was changed",
			e.Seq, cp.Seq, short(cp.Hash))
	default:
		return true
	}
	return false
}

// next checks that line num continues the chain.
func (w *walker) next(num int, e Entry) bool {
	switch {
	case e.Seq > w.expect:
		w.gapFrom, w.gapTo, w.gapLine = w.expect, e.Seq-1, num
		w.fail(FaultDeleted, w.expect, num, "%s missing before line %d (deleted)", span(w.expect, e.Seq-1), num)
	case e.Seq < w.expect:
		w.fail(FaultReordered, w.expect, num, "line %d holds entry %d where entry %d belongs: entries were reordered or duplicated",
			num, e.Seq, w.expect)
	case e.Prev != w.prev:
		w.fail(FaultEdited, e.Seq-1, num-1, "entry %d (line %d) is not the entry that entry %d links to: it was rewritten with a new hash",
			e.Seq-1, num-1, e.Seq)
	default:
		return true
	}
	return false
}

// endPrefix is reached at the checkpoint's entry while an interrupted prune
// left it in the journal: it must be the very entry the checkpoint names.
func (w *walker) endPrefix(num int, end int64, e Entry) {
	w.prefix = false
	if e.Hash != w.cp.Hash {
		w.fail(FaultCheckpoint, e.Seq+1, num, "the checkpoint records hash %s for entry %d, but the journal's entry %d has %s: the checkpoint was changed",
			short(w.cp.Hash), e.Seq, e.Seq, short(e.Hash))
		return
	}
	w.s.keepFrom = end
	w.note("%s still in the journal although the checkpoint covers them: a prune was interrupted; opening the journal completes it",
		span(w.firstSeq, e.Seq))
}

// finish runs after the last line: the end of the chain against the head.
func (w *walker) finish() {
	s := w.s
	if s.Fault == FaultCheckpoint && s.FirstBad == 0 { // unreadable checkpoint
		s.FirstBad = max(w.firstSeq, 1)
	}
	if w.accepted == 0 && w.cp != nil {
		s.LastSeq, s.LastHash = w.cp.Seq, w.cp.Hash
	}
	if w.prefix {
		w.fail(FaultCheckpoint, s.LastSeq+1, 0, "the checkpoint covers entry %d, but %s", w.cp.Seq, w.ending())
	}
	if s.torn > 0 {
		w.note("the last line is unterminated (%d bytes): an append cut off by a crash and never acknowledged; opening the journal drops it", s.torn)
	}
	w.checkHead()
	s.OK = s.Fault == ""
}

func (w *walker) checkHead() {
	s := w.s
	if s.Fault != "" {
		return
	}
	last, h := s.LastSeq, s.head
	switch {
	case !s.headExists:
		w.fail(FaultHead, last+1, 0, "the head file is missing, so a deleted tail cannot be ruled out: entries after %d may have been deleted", last)
	case h == nil:
		w.fail(FaultHead, last+1, 0, "the head file is damaged: %v", w.headErr)
	case h.Seq == last && h.Hash == s.LastHash:
	case h.Seq == last:
		w.fail(FaultHead, max(last, 1), 0, "the head file records hash %s for entry %d, but the journal's entry %d has %s",
			short(h.Hash), last, last, short(s.LastHash))
	case h.Seq > last:
		w.fail(FaultTruncated, last+1, 0, "%s missing at the end: the head file records entry %d, but %s (tail deleted)",
			span(last+1, h.Seq), h.Seq, w.ending())
	case h.Seq+1 == last && w.accepted > 0 && h.Hash == w.lastPrev:
		w.s.headBehind = true
		w.note("the head file is one entry behind the journal (entry %d): a crash came between writing the entry and updating the head; opening the journal repairs this", last)
	case h.Seq < last && w.headOnChain:
		// One batch (AppendBatch: one write, then the head) whose head
		// update a crash cut off: every entry after the head chains on
		// from it, so nothing is guessed.
		w.s.headBehind = true
		w.note("the head file is %d entries behind the journal (entry %d, journal %d), all chaining on from it: a crash came between writing a batch and updating the head; opening the journal repairs this",
			last-h.Seq, h.Seq, last)
	default:
		w.fail(FaultHead, h.Seq+1, 0, "the head file records entry %d, but %s: the head file was replaced", h.Seq, w.ending())
	}
}

// ending describes where the verified chain ends.
func (w *walker) ending() string {
	switch {
	case w.accepted > 0:
		return fmt.Sprintf("the journal ends at entry %d", w.s.LastSeq)
	case w.cp != nil:
		return fmt.Sprintf("the journal is empty after the checkpoint (entry %d)", w.cp.Seq)
	}
	return "the journal is empty"
}

func span(from, to uint64) string {
	if from == to {
		return fmt.Sprintf("entry %d is", from)
	}
	return fmt.Sprintf("entries %d-%d are", from, to)
}

func short(d Digest) string { return d.String()[:12] }
