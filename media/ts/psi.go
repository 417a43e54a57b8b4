package ts

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
	streamIDVideo  = 0xe0
)

// patSection and pmtSection are the complete sections, CRC included.
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
	pmtSection = withCRC([]byte{
		0x02,       // table_id: TS_program_map_section
		0xb0, 0x12, // section_syntax_indicator, '0', reserved, section_length 18
		programNumber >> 8, programNumber & 0xff,
		0xc1,       // reserved, version 0, current_next_indicator
		0x00, 0x00, // section_number, last_section_number
		0xe0 | PIDVideo>>8, PIDVideo & 0xff, // reserved, PCR_PID
		0xf0, 0x00, // reserved, program_info_length 0
		streamTypeH264,
		0xe0 | PIDVideo>>8, PIDVideo & 0xff, // reserved, elementary_PID
		0xf0, 0x00, // reserved, ES_info_length 0
	})
)

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
