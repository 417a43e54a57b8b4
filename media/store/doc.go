// Package store is a node's on-disk store of encrypted segments and epoch
// records, with their index and retention.
//
// It owns the directory it is opened on and nothing else. It never sees
// plaintext video or any key: a segment arrives as ciphertext (one OpenPGP
// message, DESIGN §7) and an epoch record as opaque bytes, and both leave as
// the same bytes, checked against the SHA-256 taken when they were stored.
// It imports nothing of the project (media may import only media/*, keys
// and policy), and never decides what may be recorded or for how long: the
// recorder and retention policy call it.
//
// # Layout
//
//	DIR/index.db                                   bbolt: the index
//	DIR/epochs/<camera>/<start>-<end>-<sha256>.epoch
//	DIR/segments/<camera>/<yyyy-mm-dd>/<start>-<end>-<epoch>-<sha256>.seg
//	DIR/damaged/<camera>/…                         quarantined files (Recovery.Damaged)
//
// <camera> is the camera id escaped into one path element (every byte but
// A–Z a–z 0–9 '-' '_' becomes %XX, so "praha-1/entrance" is
// "praha-1%2Fentrance" and no id can name "..", a hidden file or a
// subdirectory). Times are UTC with nanoseconds, fixed width
// (20260102T150405.000000000Z), so names sort by time; the date directory is
// the segment's start date. A file's name carries all of its index entry but
// its size, which is the file's own: Open can rebuild any missing entry from
// the names alone, and the SHA-256 in the name lets it check that the bytes
// are the ones that were written. Files are exactly what the caller handed
// in, with no header of the store's (a recorder hands in sealed segments
// and records: keys/custody.go).
//
// The index is bbolt rather than SQLite: it is pure Go (no cgo in a static
// node binary), its one writer at a time fits a store whose writes are
// fsync-bound anyway, its file lock keeps a second process off the
// directory, and it is already in the module's dependency graph.
//
// # Ordering and crash safety
//
// Writing a file: temporary file in the destination directory, write,
// fsync, rename to its final name, fsync the directory, then the index
// entry in one bbolt transaction. Put returns only after all of it, so
// whatever Put acknowledged survives kill -9 and power loss. A renamed file
// is complete (it was fsynced before the rename), so after a crash the index
// may lack a file but a file is never partial.
//
// An epoch record is stored (file and index) before any segment of its
// epoch: Put refuses a segment whose epoch record is missing (ErrNoEpoch),
// since footage that nobody could ever decrypt is a bug, not a recording.
//
// Deleting (retention): files first, then the index. A crash in between
// leaves index entries naming missing files, which Open drops, so deleted
// footage never comes back; the index cannot resurrect it and a full disk
// cannot stop it (removing files frees the space the index commit needs).
// Segments go before the epoch records they reference.
//
// Erasure (DeleteRange) deletes the same way, for the segments that
// overlap a range rather than those before a cutoff, at segment
// granularity. What keeps erased footage from coming back is a tombstone
// (AddTombstone), kept in the index's own bucket: Put refuses a segment
// that overlaps one and PutEpoch an epoch record wholly inside them
// (ErrErased), whoever offers it (replication, catch-up, a re-upload). The
// tombstone goes first; it waits for the camera's writers, so nothing is
// stored into the range after it. Retention and erasure take a predicate
// that keeps held segments (evidence holds) and the records they use.
//
// Open repairs what a crash left, and reports it in a Recovery: it deletes
// temporary files, drops index entries whose file is missing or has another
// size, and indexes again the complete files the index lacks (re-indexing
// rather than deleting: no footage is lost). An unindexed file whose bytes
// do not match the SHA-256 in its name is not what was written: it is moved
// to DIR/damaged/<camera>/, reported, and removed by retention in time.
// Open does not
// hash indexed files (that would read every recording at every start):
// ReadSegment and Epoch check the hash on every read.
//
// # Blob stores
//
// With Options.Blobs the files' bytes live in a blob store (an S3 bucket
// for a datacenter's replicas, package s3blob) under the same relative
// names, and only the index stays in the directory. The index stays
// authoritative, every read is checked against it, and the ordering above
// holds with an upload in place of the file write and a pending-deletion
// mark in the index before objects are deleted; blobs.go says what Open
// does instead of the file recovery.
//
// # Space
//
// A write that meets ENOSPC or EDQUOT removes its temporary file and
// returns an error wrapping ErrDiskFull; nothing stored is touched, and the
// next write after space is freed succeeds. Before writing, the store also
// refuses (ErrDiskFull) when the file system would have less than
// Options.MinFree bytes left, so that bbolt is not the one to meet a full
// disk in the middle of a commit. Health reports the alarm.
//
// # Concurrency
//
// A Store is safe for concurrent use. Writes and deletions of one camera
// are serialized by a per-camera mutex; different cameras write their files
// in parallel and meet only at the index commit, which bbolt serializes.
// Reads take no store lock: they see the index as of one bbolt read
// transaction, and a segment that retention removed after that reads as
// ErrNotFound. One process owns a directory (bbolt's file lock).
package store
