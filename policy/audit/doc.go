// Package audit owns a node's audit journal: an append-only, hash-chained
// record of every access-relevant operation (DESIGN §4 invariant 8) kept in
// the node's data directory, a reader, a verifier that names the first
// broken entry and what is wrong with it, and retention pruning that leaves a
// checkpoint so that verification still works afterwards.
//
// It imports nothing of the project (e2e/deps_test.go enforces this for
// everything under policy/) and only the standard library. It never logs: what
// Open repaired is returned by Recovered, what Verify found by its Report.
//
// # On disk
//
// Everything lives in <dir>/audit/ (mode 0700; files 0600):
//
//	journal.jsonl    one entry per line, oldest first, each line ending in "\n"
//	head.json        {"seq":N,"hash":"<hex>"}: the last entry appended
//	checkpoint.json  after the first prune: the last entry pruned (see below)
//	lock             flock(2)ed by the one Journal that has the directory
//	                 open, for as long as it is open (ErrLocked for another)
//	write.lock       flock(2)ed exclusively by that Journal while it changes
//	                 files, and shared by Verify while it reads
//
// A journal line is one JSON object with exactly these keys, in this order,
// as encoding/json writes them (no spaces; <, > and & escaped as \u003c,
// \u003e, \u0026; lowercase hex; time in UTC RFC 3339 with nanoseconds and
// no trailing zeros):
//
//	{"seq":7,"time":"2026-05-04T09:12:03.123Z","node":"store-brno",
//	 "actor":"admin:alice","action":"live-view","object":"camera:till-1",
//	 "decision":"allow","reason":"grant g-12","prev":"<64 hex>","hash":"<64 hex>"}
//
// (shown wrapped; on disk it is one line). Sequence numbers start at 1 and
// rise by one. prev is the hash of the entry before (all zero for entry 1);
// hash is SHA-256 over a length-prefixed encoding, never over the JSON:
//
//	"custos/audit/entry/v1" || prev (32 bytes) || seq (8 bytes, big endian) ||
//	field(time) || field(node) || field(actor) || field(action) ||
//	field(object) || field(decision) || field(reason)
//
// where field(s) is len(s) as 8 bytes big endian followed by s, and the
// domain string is itself written as a field. A decoder accepts a line only
// if re-encoding what it read gives back the very same bytes, so every byte
// of a line is covered: unknown keys, duplicate keys, other spellings of the
// same time, upper-case hex, invalid UTF-8 and lines over MaxLineBytes are all
// rejected with an error naming the cause.
//
// Before an entry is hashed its text fields are made valid UTF-8 (invalid
// bytes become U+FFFD) and cut to MaxFieldBytes with a visible marker, so an
// actor cannot keep its own events out of the journal with a name that does
// not encode. Decision is "allow", "deny" or "" for plain facts.
//
// checkpoint.json is {"seq":N,"hash":"<hex>","time":"…","pruned":"…",
// "sum":"<hex>"}: the sequence number, hash and time of the last entry that
// was pruned, when the prune ran, and SHA-256 over the length-prefixed
// encoding of those four (domain "custos/audit/checkpoint/v1"), so an edit
// of any field is detected even where nothing else refers to it.
//
// # Writing
//
// Append is serialised by a mutex (and write.lock). It writes the line with
// one write(2) on an O_APPEND descriptor, fsyncs the journal, then replaces
// head.json (temporary file, fsync, rename, fsync of the directory). Only
// then does it return: three fsyncs an event, which suits the rate of
// access decisions, not of video frames. Since and After read without
// blocking appends. After starts at the nearest of the offsets reads have
// marked (one every 256 entries; a prune drops them), so a replica asking
// for what follows its copy costs what it gets, not the journal's length.
// The head file is what makes deleting the newest entries detectable: a
// journal that ends before the entry the head records has lost its tail.
//
// A write or fsync that fails is rolled back (the file truncated to its
// previous length and fsynced). If even that fails, or the head cannot be
// written (a full disk), or a prune stops between its two steps, the next
// append first retries the repair (the truncation, the head, or finishing
// the prune as Open would) and is refused while that fails, so a
// half-written line is never followed by another one; once space returns
// the journal records again by itself. Failure says, until an append
// succeeds, that appends fail and since when: every event in between is
// lost, which a node must treat as an alarm.
//
// # Crashes
//
// Open repairs exactly the states a crash can leave, and says so in
// Recovered: an unterminated last line (an append whose fsync never
// returned, so nobody was told it was recorded) is cut off; a head behind
// the journal whose later entries all chain on from it (a crash between
// writing an entry or a batch and updating the head) is moved forward; a
// prune that wrote its checkpoint but not the shortened journal is finished.
// Nothing in the middle of the file is ever dropped or rewritten. Anything
// else that is wrong with the end of the journal (head missing or replaced,
// journal longer than its head) makes Open fail with ErrDamaged: a Journal
// never guesses where its chain continues. Damage further back does not stop
// Open; new entries chain on from the head and Verify keeps reporting the
// damage, so the evidence stays.
//
// # Pruning
//
// Prune(now) drops the longest run of entries at the start of the journal
// whose time is before now−Retention (30 days unless Options say otherwise;
// entries are ordered by sequence, so an entry with an earlier time behind a
// newer one waits for it). It first writes the checkpoint for the last entry
// it drops, atomically, and only then replaces the journal with the kept
// lines the same way; the first kept entry's prev is the checkpoint's hash,
// which is how Verify links across the gap. Prune then appends an
// "audit-prune" event recording what it removed. It never prunes past damage
// that Verify reports: the damaged entry and everything after it stay, and
// Prune says so with an error wrapping ErrDamaged.
//
// # What the chain does and does not prove
//
// The chain and head detect edits, deletions, reordering, a truncated tail
// and a changed checkpoint made by anything that does not also recompute
// every later hash and the head. Someone who can write the directory and
// recompute the chain can forge a consistent one: there is no key. Protection
// against that comes from elsewhere: journals are replicated to the
// datacenters, and a replica (or anyone holding an earlier Head) can compare
// its recorded (seq, hash) with Report.LastSeq and Report.LastHash; a
// rewritten chain will not match.
package audit
