package schemafields

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// parseJSONRecord reads a record's JSON strictly (RFC 8259: one value, whitespace
// around it; valid UTF-8; no duplicate-free guarantee, as JSON itself), noting where each
// string sits.
func parseJSONRecord(body []byte) (*jsonNode, error) {
	p := jsonParser{body: body}
	p.space()
	node, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos != len(body) {
		return nil, p.fail("trailing bytes after the JSON value")
	}
	return node, nil
}

type jsonParser struct {
	body []byte
	pos  int
}

func (p *jsonParser) fail(what string) error {
	return fmt.Errorf("%w: JSON: %s at byte %d", ErrDecode, what, p.pos)
}

func (p *jsonParser) space() {
	for p.pos < len(p.body) {
		switch p.body[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jsonParser) literal(word string) bool {
	if len(p.body)-p.pos >= len(word) && string(p.body[p.pos:p.pos+len(word)]) == word {
		p.pos += len(word)
		return true
	}
	return false
}

func (p *jsonParser) value(depth int) (*jsonNode, error) {
	if depth > maxJSONDepth {
		return nil, p.fail("nested too deep")
	}
	if p.pos >= len(p.body) {
		return nil, p.fail("truncated")
	}
	switch c := p.body[p.pos]; {
	case c == '{':
		p.pos++
		node := &jsonNode{kind: 'o'}
		p.space()
		if p.pos < len(p.body) && p.body[p.pos] == '}' {
			p.pos++
			return node, nil
		}
		for {
			p.space()
			if p.pos >= len(p.body) || p.body[p.pos] != '"' {
				return nil, p.fail("expected a member name")
			}
			name, _, _, err := p.string()
			if err != nil {
				return nil, err
			}
			p.space()
			if p.pos >= len(p.body) || p.body[p.pos] != ':' {
				return nil, p.fail("expected ':'")
			}
			p.pos++
			p.space()
			member, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			node.names = append(node.names, name)
			node.members = append(node.members, member)
			p.space()
			if p.pos < len(p.body) && p.body[p.pos] == ',' {
				p.pos++
				continue
			}
			if p.pos < len(p.body) && p.body[p.pos] == '}' {
				p.pos++
				return node, nil
			}
			return nil, p.fail("expected ',' or '}'")
		}
	case c == '[':
		p.pos++
		node := &jsonNode{kind: 'a'}
		p.space()
		if p.pos < len(p.body) && p.body[p.pos] == ']' {
			p.pos++
			return node, nil
		}
		for {
			p.space()
			element, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			node.elements = append(node.elements, element)
			p.space()
			if p.pos < len(p.body) && p.body[p.pos] == ',' {
				p.pos++
				continue
			}
			if p.pos < len(p.body) && p.body[p.pos] == ']' {
				p.pos++
				return node, nil
			}
			return nil, p.fail("expected ',' or ']'")
		}
	case c == '"':
		text, start, end, err := p.string()
		if err != nil {
			return nil, err
		}
		return &jsonNode{kind: 's', text: text, start: start, end: end}, nil
	case c == 't' || c == 'f':
		if p.literal("true") || p.literal("false") {
			return &jsonNode{kind: 'b'}, nil
		}
	case c == 'n':
		if p.literal("null") {
			return &jsonNode{kind: 'z'}, nil
		}
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	return nil, p.fail("unexpected byte")
}

func (p *jsonParser) number() (*jsonNode, error) {
	start := p.pos
	digits := func() int {
		n := 0
		for p.pos < len(p.body) && p.body[p.pos] >= '0' && p.body[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.body[p.pos] == '-' {
		p.pos++
	}
	if p.pos < len(p.body) && p.body[p.pos] == '0' {
		p.pos++
	} else if digits() == 0 {
		return nil, p.fail("bad number")
	}
	if p.pos < len(p.body) && p.body[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return nil, p.fail("bad number")
		}
	}
	if p.pos < len(p.body) && (p.body[p.pos] == 'e' || p.body[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.body) && (p.body[p.pos] == '+' || p.body[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return nil, p.fail("bad number")
		}
	}
	return &jsonNode{kind: 'n', text: string(p.body[start:p.pos])}, nil
}

// string reads a string at p.pos: its text, and its span (quotes included).
func (p *jsonParser) string() (string, int, int, error) {
	start := p.pos
	p.pos++
	var out []byte
	plain := p.pos
	for {
		if p.pos >= len(p.body) {
			return "", 0, 0, p.fail("unterminated string")
		}
		c := p.body[p.pos]
		switch {
		case c == '"':
			out = append(out, p.body[plain:p.pos]...)
			p.pos++
			if !utf8.Valid(out) {
				return "", 0, 0, p.fail("a string is not UTF-8")
			}
			return string(out), start, p.pos, nil
		case c < 0x20:
			return "", 0, 0, p.fail("a control character in a string")
		case c != '\\':
			p.pos++
			continue
		}
		out = append(out, p.body[plain:p.pos]...)
		if p.pos+1 >= len(p.body) {
			return "", 0, 0, p.fail("unterminated string")
		}
		escape := p.body[p.pos+1]
		p.pos += 2
		switch escape {
		case '"', '\\', '/':
			out = append(out, escape)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", 0, 0, p.fail("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				low, ok := rune(-1), false
				if p.pos+1 < len(p.body) && p.body[p.pos] == '\\' && p.body[p.pos+1] == 'u' {
					p.pos += 2
					low, ok = p.hex4()
				}
				if r = utf16.DecodeRune(r, low); !ok || r == utf8.RuneError {
					return "", 0, 0, p.fail("an unpaired surrogate in a string")
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", 0, 0, p.fail("bad escape")
		}
		plain = p.pos
	}
}

func (p *jsonParser) hex4() (rune, bool) {
	if p.pos+4 > len(p.body) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.body[p.pos:p.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.pos += 4
	return rune(n), true
}
