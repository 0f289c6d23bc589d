package schemafields

import (
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// The Protobuf schemas Confluent's serializers know without a reference: meta.proto
// (the field_meta option, extension 1088 of FieldOptions) and decimal.proto. Used only
// when the registry gives no reference of that name.
var builtinProtos = map[string]string{
	"confluent/meta.proto": `syntax = "proto3";
package confluent;
import "google/protobuf/descriptor.proto";
option go_package = "../confluent";
message Meta {
  string doc = 1;
  map<string, string> params = 2;
  repeated string tags = 3;
  repeated Rule rules = 4;
}
message Rule {
  string name = 1;
  string doc = 2;
  string expr = 3;
  string sql = 4;
}
extend google.protobuf.FileOptions { Meta file_meta = 1088; }
extend google.protobuf.MessageOptions { Meta message_meta = 1088; }
extend google.protobuf.FieldOptions { Meta field_meta = 1088; }
extend google.protobuf.EnumOptions { Meta enum_meta = 1088; }
extend google.protobuf.EnumValueOptions { Meta enum_value_meta = 1088; }
`,
	"confluent/type/decimal.proto": `syntax = "proto3";
package confluent.type;
option go_package = "../types";
message Decimal {
  bytes value = 1;
  uint32 precision = 2;
  int32 scale = 3;
}
`,
}

// fieldMetaNumber is (confluent.field_meta)'s number in google.protobuf.FieldOptions;
// metaTagsNumber is confluent.Meta.tags'.
const (
	fieldMetaNumber = 1088
	metaTagsNumber  = 3
)

type protoSchema struct {
	sel  *selection
	top  []protoreflect.MessageDescriptor
	tags map[protoreflect.FullName][]string
	// descriptor: the schema came as a FileDescriptorProto, whose nested types (map
	// entries included) message indexes count; from .proto text they count the
	// messages the text declares (map entries are not).
	descriptor bool
}

func (*protoSchema) schemaType() SchemaType { return Protobuf }

// asDescriptor is text as a base64 FileDescriptorProto, if it is one.
func asDescriptor(text string) *descriptorpb.FileDescriptorProto {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil || len(raw) == 0 {
		return nil
	}
	fdp := &descriptorpb.FileDescriptorProto{}
	if proto.Unmarshal(raw, fdp) != nil || fdp.GetName() == "" && len(fdp.MessageType) == 0 {
		return nil
	}
	// JSON names play no part in the binary format. A descriptor without them (Python's
	// for a message built at run time) reads to the compiler as clashing custom names
	// "": give each field protoc's default.
	var setJSONNames func([]*descriptorpb.DescriptorProto)
	setJSONNames = func(messages []*descriptorpb.DescriptorProto) {
		for _, m := range messages {
			for _, f := range append(m.Field, m.Extension...) {
				if f.GetJsonName() == "" {
					f.JsonName = proto.String(defaultJSONName(f.GetName()))
				}
			}
			setJSONNames(m.NestedType)
		}
	}
	setJSONNames(fdp.MessageType)
	for _, f := range fdp.Extension {
		if f.GetJsonName() == "" {
			f.JsonName = proto.String(defaultJSONName(f.GetName()))
		}
	}
	return fdp
}

// defaultJSONName is protoc's JSON name of a field: underscores dropped, the letter after
// each capitalized.
func defaultJSONName(name string) string {
	var b strings.Builder
	upper := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_':
			upper = true
		case upper && c >= 'a' && c <= 'z':
			b.WriteByte(c - 'a' + 'A')
			upper = false
		default:
			b.WriteByte(c)
			upper = false
		}
	}
	return b.String()
}

// rootName is the name a schema given as .proto text is compiled under: references
// cannot import it.
const rootName = "kafka-transit/registry-schema.proto"

func parseProtobuf(s *RegisteredSchema, sel *selection) (*protoSchema, error) {
	texts := map[string]string{}
	descriptors := map[string]*descriptorpb.FileDescriptorProto{}
	for _, ref := range s.References {
		if fdp := asDescriptor(ref.Text); fdp != nil {
			descriptors[ref.Name] = fdp
			if fdp.GetName() != ref.Name {
				// Imports name it as the descriptor does.
				fdp.Name = proto.String(ref.Name)
			}
		} else {
			texts[ref.Name] = ref.Text
		}
	}
	name := rootName
	root := asDescriptor(s.Text)
	if root != nil {
		if root.GetName() == "" {
			root.Name = proto.String(rootName)
		}
		name = root.GetName()
		descriptors[name] = root
	} else {
		texts[name] = s.Text
	}
	resolver := protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
		if fdp, ok := descriptors[path]; ok {
			return protocompile.SearchResult{Proto: fdp}, nil
		}
		if text, ok := texts[path]; ok {
			return protocompile.SearchResult{Source: strings.NewReader(text)}, nil
		}
		if text, ok := builtinProtos[path]; ok {
			return protocompile.SearchResult{Source: strings.NewReader(text)}, nil
		}
		return protocompile.SearchResult{}, fmt.Errorf("%s: not among the schema's references: %w", path, errNotExist)
	})
	compiler := protocompile.Compiler{Resolver: protocompile.WithStandardImports(resolver)}
	files, err := compiler.Compile(context.Background(), name)
	if err != nil {
		return nil, fmt.Errorf("%w: Protobuf schema: %w", ErrSchema, err)
	}
	file := files[0]
	p := &protoSchema{sel: sel, descriptor: root != nil, tags: map[protoreflect.FullName][]string{}}
	for i := 0; i < file.Messages().Len(); i++ {
		p.top = append(p.top, file.Messages().Get(i))
	}
	if len(p.top) == 0 {
		return nil, fmt.Errorf("%w: the Protobuf schema declares no message", ErrSchema)
	}
	checker := protoChecker{schema: p, done: map[protoreflect.FullName]bool{}}
	var own func(protoreflect.MessageDescriptors) error
	own = func(messages protoreflect.MessageDescriptors) error {
		for i := 0; i < messages.Len(); i++ {
			md := messages.Get(i)
			if md.IsMapEntry() {
				continue
			}
			if err := checker.message(md, nil, 0); err != nil {
				return err
			}
			if err := own(md.Messages()); err != nil {
				return err
			}
		}
		return nil
	}
	if err := own(file.Messages()); err != nil {
		return nil, err
	}
	return p, nil
}

var errNotExist = fs.ErrNotExist

// fieldTags are the (confluent.field_meta).tags of a field, read from its options as
// encoded, whichever way the options were built.
func fieldTags(fd protoreflect.FieldDescriptor) []string {
	options := fd.Options()
	if options == nil {
		return nil
	}
	raw, err := proto.MarshalOptions{}.Marshal(options)
	if err != nil {
		return nil
	}
	var tags []string
	for len(raw) > 0 {
		number, kind, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return tags
		}
		raw = raw[n:]
		if number != fieldMetaNumber || kind != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(number, kind, raw); n < 0 {
				return tags
			}
			raw = raw[n:]
			continue
		}
		meta, n := protowire.ConsumeBytes(raw)
		if n < 0 {
			return tags
		}
		raw = raw[n:]
		for len(meta) > 0 {
			number, kind, n := protowire.ConsumeTag(meta)
			if n < 0 {
				break
			}
			meta = meta[n:]
			if number == metaTagsNumber && kind == protowire.BytesType {
				tag, n := protowire.ConsumeBytes(meta)
				if n < 0 {
					break
				}
				tags = append(tags, string(tag))
				meta = meta[n:]
				continue
			}
			if n = protowire.ConsumeFieldValue(number, kind, meta); n < 0 {
				break
			}
			meta = meta[n:]
		}
	}
	return tags
}

// opaque: the well-known types and Confluent's own are never walked into.
func opaque(md protoreflect.MessageDescriptor) bool {
	name := string(md.FullName())
	return strings.HasPrefix(name, "google.protobuf.") || strings.HasPrefix(name, "confluent.")
}

func protectableKind(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind
}

func describeProto(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return "message `" + string(fd.Message().FullName()) + "`"
	case protoreflect.EnumKind:
		return "an enum"
	}
	return fd.Kind().String()
}

// valueOf is what each value of field fd is (a map's: its entries' value field) and
// the path step to each value, if any.
func valueOf(fd protoreflect.FieldDescriptor) (protoreflect.FieldDescriptor, *step) {
	switch {
	case fd.IsMap():
		return fd.MapValue(), &mapValueStep
	case fd.IsList():
		return fd, &elementStep
	}
	return fd, nil
}

// tagsOf: the tags of fd, worked out when the schema was parsed (the map is only read
// afterwards, so readers may share it).
func (p *protoSchema) tagsOf(fd protoreflect.FieldDescriptor) []string {
	if tags, ok := p.tags[fd.FullName()]; ok {
		return tags
	}
	return fieldTags(fd)
}

type protoChecker struct {
	schema *protoSchema
	done   map[protoreflect.FullName]bool
}

func (c *protoChecker) message(md protoreflect.MessageDescriptor, path []step, depth int) error {
	if opaque(md) {
		return nil
	}
	if depth > maxSchemaDepth {
		return fmt.Errorf("%w: messages nest deeper than %d levels", ErrSchema, maxSchemaDepth)
	}
	sel := c.schema.sel
	if !sel.mayExtendBelow(path) {
		if c.done[md.FullName()] {
			return nil
		}
		c.done[md.FullName()] = true
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		tags, ok := c.schema.tags[fd.FullName()]
		if !ok {
			tags = fieldTags(fd)
			c.schema.tags[fd.FullName()] = tags
		}
		fpath := with(path, fieldStep(string(fd.Name())))
		value, inner := valueOf(fd)
		refuse := func(why string) error {
			return fmt.Errorf("%w: field `%s` %s but holds %s: only string and bytes fields can be protected",
				ErrSchema, fd.FullName(), why, describeProto(value))
		}
		if why := sel.why(fpath, tags); why != "" {
			if !protectableKind(value) {
				return refuse(why)
			}
			continue
		}
		below := fpath
		if inner != nil {
			below = with(fpath, *inner)
			if p := sel.byPath(below); p != "" {
				if !protectableKind(value) {
					return refuse("is selected by the path " + p)
				}
				continue
			}
		}
		if value.Message() != nil {
			if err := c.message(value.Message(), below, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// message is the message descriptor the indexes name.
func (p *protoSchema) message(indexes []int) (protoreflect.MessageDescriptor, error) {
	if len(indexes) == 0 {
		indexes = []int{0}
	}
	candidates := p.top
	var found protoreflect.MessageDescriptor
	for _, i := range indexes {
		if i < 0 || i >= len(candidates) {
			return nil, fmt.Errorf("%w: the message indexes name no message of the schema", ErrFormat)
		}
		found = candidates[i]
		candidates = candidates[:0:0]
		nested := found.Messages()
		for k := 0; k < nested.Len(); k++ {
			if md := nested.Get(k); p.descriptor || !md.IsMapEntry() {
				candidates = append(candidates, md)
			}
		}
	}
	return found, nil
}

type protoRecord struct {
	schema *protoSchema
	msg    *dynamicpb.Message
	found  []located
}

func (p *protoSchema) locate(body []byte, indexes []int) (locatedRecord, error) {
	md, err := p.message(indexes)
	if err != nil {
		return nil, err
	}
	msg := dynamicpb.NewMessage(md)
	if err := (proto.UnmarshalOptions{}).Unmarshal(body, msg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	rec := &protoRecord{schema: p, msg: msg}
	if err := rec.walk(msg, nil, ""); err != nil {
		return nil, err
	}
	return rec, nil
}

func (r *protoRecord) fields() []located { return r.found }

func (r *protoRecord) finish() (any, []byte, error) {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.msg)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: encoding the opened record: %w", ErrDecode, err)
	}
	return r.msg, body, nil
}

func (r *protoRecord) note(fd protoreflect.FieldDescriptor, v protoreflect.Value, loc string, set func(protoreflect.Value)) {
	if fd.Kind() == protoreflect.BytesKind {
		r.found = append(r.found, located{path: loc, bytes: true, content: v.Bytes(),
			set: func(p []byte) { set(protoreflect.ValueOfBytes(p)) }})
		return
	}
	r.found = append(r.found, located{path: loc, content: []byte(v.String()),
		set: func(p []byte) { set(protoreflect.ValueOfString(string(p))) }})
}

// walk finds the selected fields of message m at schema path path, located path loc.
func (r *protoRecord) walk(m protoreflect.Message, path []step, loc string) error {
	md := m.Descriptor()
	if opaque(md) {
		return nil
	}
	sel := r.schema.sel
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue // unset, or empty: not on the wire, so nothing protected there
		}
		fpath := with(path, fieldStep(string(fd.Name())))
		floc := token(loc, string(fd.Name()))
		selected := sel.selects(fpath, r.schema.tagsOf(fd))
		value, inner := valueOf(fd)
		below := fpath
		if inner != nil {
			below = with(fpath, *inner)
			selected = selected || sel.byPath(below) != ""
		}
		if selected && !protectableKind(value) {
			return fmt.Errorf("%w: field `%s` is selected but holds %s", ErrSchema, fd.FullName(), describeProto(value))
		}
		descend := !selected && value.Message() != nil
		if !selected && !descend {
			continue
		}
		switch {
		case fd.IsMap():
			entries := m.Mutable(fd).Map()
			var keys []protoreflect.MapKey
			entries.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			sort.Slice(keys, func(a, b int) bool { return keys[a].String() < keys[b].String() })
			for _, k := range keys {
				k := k
				kloc := token(floc, k.String())
				if selected {
					r.note(value, entries.Get(k), kloc, func(v protoreflect.Value) { entries.Set(k, v) })
				} else if err := r.walk(entries.Mutable(k).Message(), below, kloc); err != nil {
					return err
				}
			}
		case fd.IsList():
			list := m.Mutable(fd).List()
			for j := 0; j < list.Len(); j++ {
				j := j
				if selected {
					r.note(fd, list.Get(j), index(floc, j), func(v protoreflect.Value) { list.Set(j, v) })
				} else if err := r.walk(list.Get(j).Message(), below, index(floc, j)); err != nil {
					return err
				}
			}
		case selected:
			r.note(fd, m.Get(fd), floc, func(v protoreflect.Value) { m.Set(fd, v) })
		default:
			if err := r.walk(m.Mutable(fd).Message(), below, floc); err != nil {
				return err
			}
		}
	}
	return nil
}
