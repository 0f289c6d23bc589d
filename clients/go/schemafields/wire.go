package schemafields

import (
	"encoding/binary"
	"fmt"
)

// unframe splits a value in Confluent's wire format: magic byte 0, the schema id as 4
// bytes big-endian, then the body.
func unframe(value []byte) (uint32, []byte, error) {
	switch {
	case len(value) > 0 && value[0] != 0:
		return 0, nil, fmt.Errorf("%w: magic byte is %d, not 0", ErrFormat, value[0])
	case len(value) < 5:
		return 0, nil, fmt.Errorf("%w: %d bytes, shorter than the 5-byte header", ErrFormat, len(value))
	}
	return binary.BigEndian.Uint32(value[1:5]), value[5:], nil
}

// messageIndexes splits a Protobuf body into its message indexes (a zigzag varint count,
// then each index as a zigzag varint; a count of 0 is [0], the first message) and the
// message. Bad indexes are ErrFormat: they are Confluent's framing, not the record
// (the "wire" kind of docs/schema-fields-test-vectors.json).
func messageIndexes(body []byte) ([]int, []byte, error) {
	rest := body
	count, err := readZigzag(&rest)
	if err != nil {
		return nil, nil, err
	}
	if count == 0 {
		return []int{0}, rest, nil
	}
	if count < 0 || count > int64(len(rest)) {
		return nil, nil, fmt.Errorf("%w: message index count out of range", ErrFormat)
	}
	indexes := make([]int, 0, count)
	for i := int64(0); i < count; i++ {
		index, err := readZigzag(&rest)
		if err != nil {
			return nil, nil, err
		}
		if index < 0 || index > 1<<31 {
			return nil, nil, fmt.Errorf("%w: message index out of range", ErrFormat)
		}
		indexes = append(indexes, int(index))
	}
	return indexes, rest, nil
}

func readZigzag(input *[]byte) (int64, error) {
	var value uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if len(*input) == 0 {
			return 0, fmt.Errorf("%w: truncated varint in the message indexes", ErrFormat)
		}
		b := (*input)[0]
		*input = (*input)[1:]
		value |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			return int64(value>>1) ^ -int64(value&1), nil
		}
	}
	return 0, fmt.Errorf("%w: varint longer than 10 bytes in the message indexes", ErrFormat)
}
