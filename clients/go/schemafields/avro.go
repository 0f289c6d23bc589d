package schemafields

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/hamba/avro/v2"
)

// avroAPI decodes and encodes with strings and bytes up to 64 MiB (hamba's default is 1 MiB).
var avroAPI = avro.Config{MaxByteSliceSize: 64 << 20}.Freeze()

type avroSchema struct {
	schema avro.Schema
	sel    *selection
}

func (*avroSchema) schemaType() SchemaType { return Avro }

// parseAvro parses an Avro schema and its references (each into one cache of its own,
// so two versions of a type never mix), then checks what the selection picks: only
// string and bytes fields, or unions of them with null.
func parseAvro(s *RegisteredSchema, sel *selection) (*avroSchema, error) {
	cache := &avro.SchemaCache{}
	// References come depth first (a reference before what it references): parse the
	// last first.
	for i := len(s.References) - 1; i >= 0; i-- {
		if _, err := avro.ParseWithCache(s.References[i].Text, "", cache); err != nil {
			return nil, fmt.Errorf("%w: Avro reference %q: %w", ErrSchema, s.References[i].Name, err)
		}
	}
	schema, err := avro.ParseWithCache(s.Text, "", cache)
	if err != nil {
		return nil, fmt.Errorf("%w: Avro schema: %w", ErrSchema, err)
	}
	a := &avroSchema{schema: schema, sel: sel}
	checker := avroChecker{sel: sel, done: map[string]bool{}}
	if err := checker.walk(schema, nil, 0); err != nil {
		return nil, err
	}
	return a, nil
}

func deref(s avro.Schema) avro.Schema {
	if ref, ok := s.(*avro.RefSchema); ok {
		return ref.Schema()
	}
	return s
}

func avroTags(field *avro.Field) ([]string, error) {
	raw := field.Prop("confluent:tags")
	if raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: field %s has a \"confluent:tags\" that is not an array", ErrSchema, field.Name())
	}
	tags := make([]string, len(list))
	for i, tag := range list {
		if tags[i], ok = tag.(string); !ok {
			return nil, fmt.Errorf("%w: field %s has a \"confluent:tags\" that is not all strings", ErrSchema, field.Name())
		}
	}
	return tags, nil
}

// avroKind is how a selected field of schema s is protected: a string or bytes, or a
// union of those and null; ok false for anything else.
func avroKind(s avro.Schema) (ok bool) {
	switch s := deref(s).(type) {
	case *avro.PrimitiveSchema:
		return s.Type() == avro.String || s.Type() == avro.Bytes && s.Logical() == nil
	case *avro.UnionSchema:
		some := false
		for _, branch := range s.Types() {
			switch {
			case deref(branch).Type() == avro.Null:
			case avroKind(branch) && deref(branch).Type() != avro.Union:
				some = true
			default:
				return false
			}
		}
		return some
	}
	return false
}

func describeAvro(s avro.Schema) string {
	s = deref(s)
	switch s := s.(type) {
	case *avro.RecordSchema:
		return "record " + s.FullName()
	case *avro.EnumSchema:
		return "enum " + s.FullName()
	case *avro.FixedSchema:
		return "fixed " + s.FullName()
	case *avro.ArraySchema:
		return "an array"
	case *avro.MapSchema:
		return "a map"
	case *avro.UnionSchema:
		out := "a union of"
		for i, b := range s.Types() {
			if i > 0 {
				out += ","
			}
			out += " " + describeAvro(b)
		}
		return out
	case *avro.PrimitiveSchema:
		if s.Logical() != nil {
			return string(s.Type()) + " (" + string(s.Logical().Type()) + ")"
		}
	}
	return string(s.Type())
}

// avroChecker walks the schema once: a selected field of another type than string or
// bytes is refused for every record of the schema, never passed in clear.
type avroChecker struct {
	sel  *selection
	done map[string]bool // records walked where only tags decide below
}

const maxSchemaDepth = 256

func (c *avroChecker) walk(s avro.Schema, path []step, depth int) error {
	if depth > maxSchemaDepth {
		return fmt.Errorf("%w: types nest deeper than %d levels", ErrSchema, maxSchemaDepth)
	}
	switch s := deref(s).(type) {
	case *avro.RecordSchema:
		if !c.sel.mayExtendBelow(path) {
			if c.done[s.FullName()] {
				return nil
			}
			c.done[s.FullName()] = true
		}
		for _, field := range s.Fields() {
			tags, err := avroTags(field)
			if err != nil {
				return err
			}
			if err := c.child(field.Type(), with(path, fieldStep(field.Name())), tags, depth); err != nil {
				return err
			}
		}
	case *avro.ArraySchema:
		return c.child(s.Items(), with(path, elementStep), nil, depth)
	case *avro.MapSchema:
		return c.child(s.Values(), with(path, mapValueStep), nil, depth)
	case *avro.UnionSchema:
		for _, branch := range s.Types() {
			if err := c.walk(branch, path, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *avroChecker) child(s avro.Schema, path []step, tags []string, depth int) error {
	if why := c.sel.why(path, tags); why != "" {
		if !avroKind(s) {
			return fmt.Errorf("%w: field %s %s but is %s; only string and bytes fields can be protected",
				ErrSchema, schemaPath(path), why, describeAvro(s))
		}
		return nil
	}
	return c.walk(s, path, depth+1)
}

type avroRecord struct {
	schema *avroSchema
	value  any
	found  []located
}

func (a *avroSchema) locate(body []byte, _ []int) (locatedRecord, error) {
	// ReadNext decodes on demand: recursive types too (ReadVal into an interface builds
	// its decoders for the whole schema first, endlessly for a recursive one).
	reader := avro.NewReader(nil, 0, avro.WithReaderConfig(avroAPI)).Reset(body)
	value := reader.ReadNext(a.schema)
	if reader.Error != nil {
		if errors.Is(reader.Error, io.EOF) {
			return nil, fmt.Errorf("%w: truncated", ErrDecode)
		}
		return nil, fmt.Errorf("%w: %w", ErrDecode, reader.Error)
	}
	var one [1]byte
	if reader.Read(one[:]); reader.Error == nil {
		return nil, fmt.Errorf("%w: trailing bytes after the record", ErrDecode)
	}
	rec := &avroRecord{schema: a, value: value}
	if err := rec.walk(a.schema, value, nil, "", nil, func(v any) { rec.value = v }); err != nil {
		return nil, err
	}
	return rec, nil
}

func (r *avroRecord) fields() []located { return r.found }

func (r *avroRecord) finish() (any, []byte, error) {
	body, err := appendAvro(nil, r.schema.schema, r.value, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: encoding the opened record: %w", ErrDecode, err)
	}
	return r.value, body, nil
}

// appendAvro encodes v, as Reader.ReadNext decodes it, under s: records, arrays (one
// block), maps (one block, keys sorted) and unions here, so recursive types work; every
// other type by hamba/avro's encoder (logical types included).
func appendAvro(out []byte, s avro.Schema, v any, depth int) ([]byte, error) {
	if depth > 10_000 {
		return nil, errors.New("nested too deep")
	}
	long := func(n int64) { out = binary.AppendVarint(out, n) }
	switch s := deref(s).(type) {
	case *avro.RecordSchema:
		record, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("record %s is a %T", s.FullName(), v)
		}
		for _, field := range s.Fields() {
			var err error
			if out, err = appendAvro(out, field.Type(), record[field.Name()], depth+1); err != nil {
				return nil, err
			}
		}
	case *avro.ArraySchema:
		items, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("an array is a %T", v)
		}
		if len(items) > 0 {
			long(int64(len(items)))
			for _, item := range items {
				var err error
				if out, err = appendAvro(out, s.Items(), item, depth+1); err != nil {
					return nil, err
				}
			}
		}
		long(0)
	case *avro.MapSchema:
		values, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("a map is a %T", v)
		}
		if len(values) > 0 {
			keys := make([]string, 0, len(values))
			for key := range values {
				keys = append(keys, key)
			}
			sort.Strings(keys)
			long(int64(len(keys)))
			for _, key := range keys {
				long(int64(len(key)))
				out = append(out, key...)
				var err error
				if out, err = appendAvro(out, s.Values(), values[key], depth+1); err != nil {
					return nil, err
				}
			}
		}
		long(0)
	case *avro.UnionSchema:
		if v == nil {
			_, i := s.Types().Get("null")
			if i < 0 {
				return nil, errors.New("null in a union without null")
			}
			long(int64(i))
			return out, nil
		}
		branchOf, ok := v.(map[string]any)
		if !ok || len(branchOf) != 1 {
			return nil, fmt.Errorf("a union is a %T", v)
		}
		for name, inner := range branchOf {
			branch, i := s.Types().Get(name)
			if branch == nil {
				return nil, fmt.Errorf("no union branch %q", name)
			}
			long(int64(i))
			return appendAvro(out, branch, inner, depth+1)
		}
	default:
		leaf, err := avroAPI.Marshal(s, v)
		if err != nil {
			return nil, err
		}
		out = append(out, leaf...)
	}
	return out, nil
}

func unexpected(path []step, v any) error {
	return fmt.Errorf("%w: at %s the decoded value is a %T", ErrDecode, schemaPath(path), v)
}

// walk finds the selected fields in value v of schema s, at schema path path and
// located path loc; set replaces v where it is.
func (r *avroRecord) walk(s avro.Schema, v any, path []step, loc string, tags []string, set func(any)) error {
	sel := r.schema.sel
	if sel.selects(path, tags) && len(path) > 0 {
		return r.protect(s, v, path, loc, set)
	}
	switch s := deref(s).(type) {
	case *avro.RecordSchema:
		record, ok := v.(map[string]any)
		if !ok {
			return unexpected(path, v)
		}
		for _, field := range s.Fields() {
			name := field.Name()
			fieldTags, err := avroTags(field)
			if err != nil {
				return err
			}
			err = r.walk(field.Type(), record[name], with(path, fieldStep(name)), token(loc, name), fieldTags,
				func(nv any) { record[name] = nv })
			if err != nil {
				return err
			}
		}
	case *avro.ArraySchema:
		items, ok := v.([]any)
		if !ok {
			return unexpected(path, v)
		}
		itemPath := with(path, elementStep)
		for i := range items {
			i := i
			if err := r.walk(s.Items(), items[i], itemPath, index(loc, i), nil, func(nv any) { items[i] = nv }); err != nil {
				return err
			}
		}
	case *avro.MapSchema:
		values, ok := v.(map[string]any)
		if !ok {
			return unexpected(path, v)
		}
		keys := make([]string, 0, len(values))
		for key := range values {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		valuePath := with(path, mapValueStep)
		for _, key := range keys {
			key := key
			if err := r.walk(s.Values(), values[key], valuePath, token(loc, key), nil,
				func(nv any) { values[key] = nv }); err != nil {
				return err
			}
		}
	case *avro.UnionSchema:
		if v == nil {
			return nil
		}
		branchOf, ok := v.(map[string]any)
		if !ok || len(branchOf) != 1 {
			return unexpected(path, v)
		}
		for name, inner := range branchOf {
			branch, _ := s.Types().Get(name)
			if branch == nil {
				return unexpected(path, v)
			}
			return r.walk(branch, inner, path, loc, nil, func(nv any) { branchOf[name] = nv })
		}
	}
	return nil
}

// protect notes selected field v (string, bytes, or a union of them with null).
func (r *avroRecord) protect(s avro.Schema, v any, path []step, loc string, set func(any)) error {
	switch s := deref(s).(type) {
	case *avro.UnionSchema:
		if v == nil {
			return nil // null: nothing to protect
		}
		branchOf, ok := v.(map[string]any)
		if !ok || len(branchOf) != 1 {
			return unexpected(path, v)
		}
		for name, inner := range branchOf {
			branch, _ := s.Types().Get(name)
			if branch == nil {
				return unexpected(path, v)
			}
			return r.protect(branch, inner, path, loc, func(nv any) { branchOf[name] = nv })
		}
	case *avro.PrimitiveSchema:
		switch v := v.(type) {
		case string:
			if s.Type() == avro.String {
				r.found = append(r.found, located{path: loc, content: []byte(v),
					set: func(p []byte) { set(string(p)) }})
				return nil
			}
		case []byte:
			if s.Type() == avro.Bytes {
				r.found = append(r.found, located{path: loc, bytes: true, content: v,
					set: func(p []byte) { set(p) }})
				return nil
			}
		}
	}
	return fmt.Errorf("%w: field %s is selected but holds %s", ErrSchema, schemaPath(path), describeAvro(s))
}
