package kafkatransit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Format 3 (docs/protected-records.md): the protection header, flags, binding data, the
// sealed headers' frame, and the compression and padding of envelope bodies.

// ProtectionHeader is the header every format 3 record carries in clear: "3;<flags hex>".
const ProtectionHeader = "kafka-transit.protection"

// DefaultMaxPlaintext bounds what a compressed record may expand to unless told otherwise.
const DefaultMaxPlaintext = 16 << 20

var (
	bindingPrefix     = []byte("kafka-transit/3")
	commitmentMessage = []byte("kafka-transit/3 key commitment")
)

// Why a format 3 record could not be read; match with errors.Is.
var (
	// ErrFlags: the protection header is missing, malformed or of unknown flags, or its flags
	// differ from the envelope's (a stripped or edited header).
	ErrFlags = errors.New("kafka-transit protection flags refused")
	// ErrCommitment: the data key is not the one the envelope commits to (its wrapped key was
	// swapped for another data key's).
	ErrCommitment = errors.New("envelope key commitment mismatch")
	// ErrPadding: padding that is not zeros, or a length past the end.
	ErrPadding = errors.New("bad envelope padding")
	// ErrDecompression: the body is not a valid zstd or LZ4 frame.
	ErrDecompression = errors.New("envelope body does not decompress")
	// ErrTooLarge: the body decompresses past the reader's limit.
	ErrTooLarge = errors.New("envelope body decompresses past the limit")
	// ErrFrame: the sealed headers' frame is not one.
	ErrFrame = errors.New("bad sealed headers frame")
	// ErrUnbound: the record is not bound as the reader requires (RequireBinding).
	ErrUnbound = errors.New("record not bound as required")
)

// Flags is a format 3 record's flags byte.
type Flags byte

const (
	FlagStream        Flags = 0x01
	FlagKey           Flags = 0x02
	FlagHeaders       Flags = 0x04
	FlagPadded        Flags = 0x08
	flagCompression   Flags = 0x30
	FlagZstd          Flags = 0x10
	FlagLZ4           Flags = 0x20
	flagRecordKeys    Flags = 0xc0
	FlagKeysEncrypted Flags = 0x40
	FlagKeysHMAC      Flags = 0x80
)

// ParseFlags refuses the combinations no version gives a meaning (compression 0x30,
// record keys 0xc0).
func ParseFlags(b byte) (Flags, error) {
	f := Flags(b)
	if f&flagCompression == flagCompression || f&flagRecordKeys == flagRecordKeys {
		return 0, fmt.Errorf("%w: unknown flags 0x%02x", ErrFlags, b)
	}
	return f, nil
}

// Has reports whether every bit of bits is set.
func (f Flags) Has(bits Flags) bool { return f&bits == bits }

// HeaderValue is the protection header's value for these flags, e.g. "3;5f".
func (f Flags) HeaderValue() []byte { return []byte(fmt.Sprintf("3;%02x", byte(f))) }

// ParseProtectionHeader reads a kafka-transit.protection header value.
func ParseProtectionHeader(value []byte) (Flags, error) {
	if !bytes.HasPrefix(value, []byte("3;")) {
		return 0, fmt.Errorf("%w: the %s header names an unknown format", ErrFlags, ProtectionHeader)
	}
	digits := value[2:]
	valid := len(digits) == 2
	for _, c := range digits {
		valid = valid && ('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F')
	}
	if !valid {
		return 0, fmt.Errorf("%w: the %s header is not \"3;\" and two hex digits", ErrFlags, ProtectionHeader)
	}
	b, _ := strconv.ParseUint(string(digits), 16, 8)
	return ParseFlags(byte(b))
}

// Binding is the binding data of a record: "kafka-transit/3" ‖ flags ‖ [u16 stream] ‖
// [0x00 for a null key | 0x01 ‖ u32 ‖ key] ‖ [u32 ‖ JSON Pointer] (pointer "" and
// hasPointer false for whole values). key is the record key as on the sink, nil for a null key.
func Binding(flags Flags, stream string, key []byte, pointer *string) []byte {
	out := append(append([]byte(nil), bindingPrefix...), byte(flags))
	if flags&FlagStream != 0 {
		out = binary.BigEndian.AppendUint16(out, uint16(len(stream)))
		out = append(out, stream...)
	}
	if flags&FlagKey != 0 {
		if key == nil {
			out = append(out, 0)
		} else {
			out = append(out, 1)
			out = binary.BigEndian.AppendUint32(out, uint32(len(key)))
			out = append(out, key...)
		}
	}
	if pointer != nil {
		out = binary.BigEndian.AppendUint32(out, uint32(len(*pointer)))
		out = append(out, *pointer...)
	}
	return out
}

// Header is a Kafka record header; a nil Value is a header without value.
type Header struct {
	Key   string
	Value []byte
}

// Frame is the plaintext that carries sealed headers and the value.
func Frame(headers []Header, value []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(headers)))
	for _, h := range headers {
		out = binary.BigEndian.AppendUint32(out, uint32(len(h.Key)))
		out = append(out, h.Key...)
		if h.Value == nil {
			out = binary.BigEndian.AppendUint32(out, 0xffffffff)
		} else {
			out = binary.BigEndian.AppendUint32(out, uint32(len(h.Value)))
			out = append(out, h.Value...)
		}
	}
	return append(out, value...)
}

// Unframe splits a frame into its sealed headers and the value.
func Unframe(frame []byte) ([]Header, []byte, error) {
	short := fmt.Errorf("%w: it ends too soon", ErrFrame)
	if len(frame) < 4 {
		return nil, nil, short
	}
	count := binary.BigEndian.Uint32(frame)
	rest := frame[4:]
	if uint64(count) > uint64(len(rest)/8) { // each header takes at least 8 bytes
		return nil, nil, short
	}
	headers := make([]Header, 0, count)
	for i := uint32(0); i < count; i++ {
		if len(rest) < 4 {
			return nil, nil, short
		}
		n := binary.BigEndian.Uint32(rest)
		if uint64(len(rest)-4) < uint64(n)+4 {
			return nil, nil, short
		}
		name := string(rest[4 : 4+n])
		rest = rest[4+n:]
		length := int32(binary.BigEndian.Uint32(rest))
		rest = rest[4:]
		switch {
		case length == -1:
			headers = append(headers, Header{Key: name})
		case length < 0:
			return nil, nil, fmt.Errorf("%w: it holds a negative value length", ErrFrame)
		case int64(len(rest)) < int64(length):
			return nil, nil, short
		default:
			headers = append(headers, Header{Key: name, Value: append([]byte{}, rest[:length]...)})
			rest = rest[length:]
		}
	}
	return headers, rest, nil
}

// Pad is u32 length ‖ data ‖ zeros to a multiple of padTo (> 0).
func Pad(data []byte, padTo int) []byte {
	total := (4 + len(data) + padTo - 1) / padTo * padTo
	out := make([]byte, 4, total)
	binary.BigEndian.PutUint32(out, uint32(len(data)))
	out = append(out, data...)
	return out[:total]
}

// Unpad is the data Pad padded; padding that is not zeros is refused.
func Unpad(padded []byte) ([]byte, error) {
	if len(padded) < 4 {
		return nil, fmt.Errorf("%w: it ends too soon", ErrPadding)
	}
	length := binary.BigEndian.Uint32(padded)
	if uint64(length) > uint64(len(padded)-4) {
		return nil, fmt.Errorf("%w: a length past the end", ErrPadding)
	}
	for _, b := range padded[4+length:] {
		if b != 0 {
			return nil, fmt.Errorf("%w: it is not zeros", ErrPadding)
		}
	}
	return padded[4 : 4+length], nil
}

func commitmentOf(dataKey []byte) []byte {
	mac := hmac.New(sha256.New, dataKey)
	mac.Write(commitmentMessage)
	return mac.Sum(nil)
}

// decodeBody unpads and decompresses a version 3 plaintext, never past limit bytes.
func decodeBody(opened []byte, flags Flags, limit int) ([]byte, error) {
	data := opened
	if flags&FlagPadded != 0 {
		var err error
		if data, err = Unpad(opened); err != nil {
			return nil, err
		}
	}
	var reader io.Reader
	switch flags & flagCompression {
	case FlagZstd:
		decoder, err := zstd.NewReader(bytes.NewReader(data), zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(uint64(limit)+1<<20))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDecompression, err)
		}
		defer decoder.Close()
		reader = decoder
	case FlagLZ4:
		reader = lz4.NewReader(bytes.NewReader(data))
	default:
		return data, nil
	}
	out, err := io.ReadAll(io.LimitReader(reader, int64(limit)+1))
	if len(out) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	if err != nil {
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
		}
		return nil, fmt.Errorf("%w: %v", ErrDecompression, err)
	}
	return out, nil
}

// compressBody compresses (zstd level 3, or an LZ4 frame) and pads a version 3 plaintext.
func compressBody(plaintext []byte, flags Flags, padTo int) ([]byte, error) {
	body := plaintext
	switch flags & flagCompression {
	case FlagZstd:
		encoder, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		body = encoder.EncodeAll(plaintext, nil)
		encoder.Close()
	case FlagLZ4:
		var buffer bytes.Buffer
		writer := lz4.NewWriter(&buffer)
		if _, err := writer.Write(plaintext); err != nil {
			return nil, err
		}
		if err := writer.Close(); err != nil {
			return nil, err
		}
		body = buffer.Bytes()
	}
	if flags&FlagPadded != 0 {
		body = Pad(body, padTo)
	}
	return body, nil
}
