// Package media owns what happens to video on a node: camera sources
// (media/source: RTSP and the synthetic clip), the GOP-aligned MPEG-TS
// segmenter (media/ts), the encrypted segment store with its index and
// retention (media/store), and the recorder that joins them under the
// policy's cameras, and the live-view hub that fans a camera's frames out
// to its viewers. Replication and export come later.
//
// # Recording
//
// A Recorder records one camera: source frames → ts.Segmenter → a bounded
// queue → a writer that stores the epoch record (once, before any segment
// of its epoch), encrypts the segment to the epoch's public key and stores
// the ciphertext. Both are stored sealed with the store's node key
// (keys.SealEpochRecord, keys.SealSegment): segments as a signed hash chain
// per camera, so an export shows which store recorded the footage and
// whether any of it was removed, swapped or reordered; and the writer
// records only under epoch records it sealed itself. Plaintext exists only in memory and is zeroed once
// encrypted; no private key is ever in this package (keys.EpochKeys wipes
// each one right after splitting it to the custodians). Neither key
// generation nor a slow disk holds up the camera: when the queue is full
// the newest segment is dropped and counted, and a full disk loses
// segments behind an alarm (Stats().DiskFull) until space is freed. See
// Recorder for the reasoning.
//
// # Live view
//
// A Live hub keeps a camera's most recent GOPs in memory and fans every
// frame out to its viewers: a viewer starts at the latest keyframe, all
// viewers share one copy of each frame, and a viewer that falls behind
// skips to the next keyframe instead of slowing the recorder, which
// publishes to the hub (RecorderConfig.Live), or the other viewers.
//
// # Retention
//
// Retain deletes a camera's footage and epoch records past its retention;
// RetainExcept keeps the segments an evidence hold covers. It does not
// schedule itself: the node calls it periodically for each camera with
// the policy's retention.
//
// Erasure of a camera's time range is the store's: store.AddTombstone
// (so that nothing of the range is ever stored again), then
// store.DeleteRange. Redacting an export for a subject access request is
// media/redact's.
//
// It never imports consensus, mesh or node (e2e/deps_test.go): node hands it
// the policy and the keys it needs.
package media
