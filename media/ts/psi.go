package ts

import "github.com/custos-cctv/custos/media/h264"

// Program-specific information: the PAT and PMT that let a player find the
// video. Both are constant for Custos' one-program layout, so they are built
// once and only their continuity counters change.

// PIDs and numbers of the one program Custos writes. ffmpeg uses the same
// PIDs, which keeps remuxed exports and recordings alike.
const (
	PIDPAT         = 0x0000
	PIDPMT         = 0x1000
	PIDVideo       = 0x0100
	programNumber  = 1
	streamTypeH264 = 0x1b
	streamTypeH265 = 0x24
	streamIDVideo  = 0xe0
)

// StreamType is the PMT stream_type of codec c (ISO 13818-1 table 2-34):
// 0x1b for H.264, 0x24 for H.265; 0 for a codec Custos does not mux.
func StreamType(c h264.Codec) byte {
	switch c {
	case h264.CodecH264:
		return streamTypeH264
	case h264.CodecH265:
		return streamTypeH265
	}
	return 0
}

// CodecOf is the codec of a PMT stream_type, and false for any type
// Custos does not write.
func CodecOf(streamType byte) (h264.Codec, bool) {
	switch streamType {
	case streamTypeH264:
		return h264.CodecH264, true
	case streamTypeH265:
		return h264.CodecH265, true
	}
	return 0, false
}

// patSection and pmtSections are the complete sections, CRC included.
var (
	patSection = withCRC([]byte{
		0x00,       // table_id: program_association_section
		0xb0, 0x0d, // section_syntax_indicator, '0', reserved, section_length 13
		0x00, 0x01, // transport_stream_id
		0xc1,       // reserved, version 0, current_next_indicator
		0x00, 0x00, // section_number, last_section_number
		programNumber >> 8, programNumber & 0xff,
		0xe0 | PIDPMT>>8, PIDPMT & 0xff, // reserved, program_map_PID
	})
	// pmtSections by codec. Each codec has its own version_number, so a
	// player reading a stream whose camera switched codecs (one Muxer's
	// output, concatenated) sees the PMT change.
	pmtSections = [...][]byte{
		h264.CodecH264: pmt(0, streamTypeH264),
		h264.CodecH265: pmt(1, streamTypeH265),
	}
)

func pmt(version, streamType byte) []byte {
	return withCRC([]byte{
		0x02,       // table_id: TS_program_map_section
		0xb0, 0x12, // section_syntax_indicator, '0', reserved, section_length 18
		programNumber >> 8, programNumber & 0xff,
		0xc1 | version<<1, // reserved, version_number, current_next_indicator
		0x00, 0x00,        // section_number, last_section_number
		0xe0 | PIDVideo>>8, PIDVideo & 0xff, // reserved, PCR_PID
		0xf0, 0x00, // reserved, program_info_length 0
		streamType,
		0xe0 | PIDVideo>>8, PIDVideo & 0xff, // reserved, elementary_PID
		0xf0, 0x00, // reserved, ES_info_length 0
	})
}

// appendSection appends one TS packet carrying a whole PSI section: the
// header with payload_unit_start_indicator, pointer_field 0, the section,
// and 0xff filling (allowed after a section, unlike in a PES).
func appendSection(dst []byte, pid uint16, cc uint8, section []byte) []byte {
	dst = append(dst, syncByte, 0x40|byte(pid>>8), byte(pid), 0x10|cc&0x0f, 0x00)
	dst = append(dst, section...)
	for range PacketSize - 5 - len(section) {
		dst = append(dst, 0xff)
	}
	return dst
}

// withCRC appends the section's CRC_32 (ISO 13818-1 annex A).
func withCRC(section []byte) []byte {
	c := CRC32MPEG(section)
	return append(section, byte(c>>24), byte(c>>16), byte(c>>8), byte(c))
}

// CRC32MPEG is CRC-32/MPEG-2 (ISO 13818-1 annex A): polynomial 0x04c11db7, not reflected, initial
// value all ones, no final xor. hash/crc32 only does the reflected form.
func CRC32MPEG(b []byte) uint32 {
	crc := uint32(0xffffffff)
	for _, v := range b {
		crc ^= uint32(v) << 24
		for range 8 {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04c11db7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
