package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.List;

import com.google.protobuf.ByteString;
import com.google.protobuf.DescriptorProtos.DescriptorProto;
import com.google.protobuf.DescriptorProtos.FieldDescriptorProto;
import com.google.protobuf.DescriptorProtos.FieldDescriptorProto.Label;
import com.google.protobuf.DescriptorProtos.FieldDescriptorProto.Type;
import com.google.protobuf.DescriptorProtos.FieldOptions;
import com.google.protobuf.DescriptorProtos.FileDescriptorProto;
import com.google.protobuf.DescriptorProtos.MessageOptions;
import com.google.protobuf.DescriptorProtos.OneofDescriptorProto;
import com.google.protobuf.Descriptors.Descriptor;
import com.google.protobuf.Descriptors.FileDescriptor;
import com.google.protobuf.DynamicMessage;
import com.google.protobuf.UnknownFieldSet;
import org.junit.jupiter.api.Test;

import io.kafkatransit.client.schema.OpenedRecord;
import io.kafkatransit.client.schema.RegisteredSchema;
import io.kafkatransit.client.schema.SchemaFieldsException;
import io.kafkatransit.client.schema.SchemaFieldsException.Reason;
import io.kafkatransit.client.schema.SchemaFieldsOptions;
import io.kafkatransit.client.schema.SchemaFieldsReader;

/**
 * Protobuf records, their schema registered as .proto text (as Confluent's registry serves
 * it) or as a base64 FileDescriptorProto (as Apicurio keeps what the Python serializer
 * registers), protected by hand with {@link FakeTransit} and opened.
 */
class SchemaFieldsProtobufTest {
    static final String TEXT = """
            syntax = "proto3";
            package kafkatransit.test;

            import "confluent/meta.proto";

            message Customer {
              message Address {
                string street = 1 [(confluent.field_meta).tags = "PII"];
                string city = 2;
              }
              message Phone {
                string kind = 1;
                string number = 2 [(confluent.field_meta) = { tags: ["PII"] }];
              }
              int64 id = 1;
              string name = 2 [(confluent.field_meta).tags = "PII"];
              optional string email = 3 [(confluent.field_meta).tags = "PII"];
              Address address = 4;
              repeated Phone phones = 5;
              string notes = 6;
              int32 loyalty = 7;
              oneof contact {
                string phone = 8 [(confluent.field_meta).tags = "PII"];
                string handle = 9;
              }
              map<string, string> attributes = 10 [(confluent.field_meta).tags = "PII"];
              bytes photo = 11 [(confluent.field_meta).tags = "PII"];
              repeated string aliases = 12 [(confluent.field_meta).tags = "PII"];
              map<int32, Address> previous = 13;
            }

            message Other {
              string secret = 1 [(confluent.field_meta).tags = "PII"];
            }
            """;

    /** The same file as protoc would describe it, tags as FieldOptions extension 1088 (unknown here). */
    static final FileDescriptorProto PROTO = descriptor();
    static final FileDescriptor FILE;

    static {
        try {
            FILE = FileDescriptor.buildFrom(PROTO, new FileDescriptor[0], true);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static final Descriptor CUSTOMER = FILE.findMessageTypeByName("Customer");

    final FakeTransit transit = new FakeTransit();

    static FieldOptions tagged(String... tags) {
        UnknownFieldSet.Builder meta = UnknownFieldSet.newBuilder();
        UnknownFieldSet.Field.Builder list = UnknownFieldSet.Field.newBuilder();
        for (String tag : tags) {
            list.addLengthDelimited(ByteString.copyFromUtf8(tag));
        }
        meta.addField(3, list.build());
        return FieldOptions.newBuilder().setUnknownFields(UnknownFieldSet.newBuilder()
                .addField(1088, UnknownFieldSet.Field.newBuilder().addLengthDelimited(meta.build().toByteString()).build())
                .build()).build();
    }

    static FieldDescriptorProto.Builder field(String name, int number, Type type) {
        return FieldDescriptorProto.newBuilder().setName(name).setNumber(number).setType(type)
                .setLabel(Label.LABEL_OPTIONAL);
    }

    static FileDescriptorProto descriptor() {
        DescriptorProto address = DescriptorProto.newBuilder().setName("Address")
                .addField(field("street", 1, Type.TYPE_STRING).setOptions(tagged("PII")))
                .addField(field("city", 2, Type.TYPE_STRING)).build();
        DescriptorProto phone = DescriptorProto.newBuilder().setName("Phone")
                .addField(field("kind", 1, Type.TYPE_STRING))
                .addField(field("number", 2, Type.TYPE_STRING).setOptions(tagged("PII"))).build();
        DescriptorProto attributesEntry = DescriptorProto.newBuilder().setName("AttributesEntry")
                .setOptions(MessageOptions.newBuilder().setMapEntry(true))
                .addField(field("key", 1, Type.TYPE_STRING)).addField(field("value", 2, Type.TYPE_STRING)).build();
        DescriptorProto previousEntry = DescriptorProto.newBuilder().setName("PreviousEntry")
                .setOptions(MessageOptions.newBuilder().setMapEntry(true))
                .addField(field("key", 1, Type.TYPE_INT32))
                .addField(field("value", 2, Type.TYPE_MESSAGE).setTypeName(".kafkatransit.test.Customer.Address"))
                .build();
        DescriptorProto customer = DescriptorProto.newBuilder().setName("Customer")
                .addNestedType(address).addNestedType(phone).addNestedType(attributesEntry).addNestedType(previousEntry)
                .addOneofDecl(OneofDescriptorProto.newBuilder().setName("contact"))
                .addOneofDecl(OneofDescriptorProto.newBuilder().setName("_email"))
                .addField(field("id", 1, Type.TYPE_INT64))
                .addField(field("name", 2, Type.TYPE_STRING).setOptions(tagged("PII")))
                .addField(field("email", 3, Type.TYPE_STRING).setOptions(tagged("PII")).setOneofIndex(1)
                        .setProto3Optional(true))
                .addField(field("address", 4, Type.TYPE_MESSAGE).setTypeName(".kafkatransit.test.Customer.Address"))
                .addField(field("phones", 5, Type.TYPE_MESSAGE).setTypeName(".kafkatransit.test.Customer.Phone")
                        .setLabel(Label.LABEL_REPEATED))
                .addField(field("notes", 6, Type.TYPE_STRING))
                .addField(field("loyalty", 7, Type.TYPE_INT32))
                .addField(field("phone", 8, Type.TYPE_STRING).setOptions(tagged("PII")).setOneofIndex(0))
                .addField(field("handle", 9, Type.TYPE_STRING).setOneofIndex(0))
                .addField(field("attributes", 10, Type.TYPE_MESSAGE).setLabel(Label.LABEL_REPEATED)
                        .setTypeName(".kafkatransit.test.Customer.AttributesEntry").setOptions(tagged("PII")))
                .addField(field("photo", 11, Type.TYPE_BYTES).setOptions(tagged("PII")))
                .addField(field("aliases", 12, Type.TYPE_STRING).setLabel(Label.LABEL_REPEATED)
                        .setOptions(tagged("PII")))
                .addField(field("previous", 13, Type.TYPE_MESSAGE).setLabel(Label.LABEL_REPEATED)
                        .setTypeName(".kafkatransit.test.Customer.PreviousEntry"))
                .build();
        DescriptorProto other = DescriptorProto.newBuilder().setName("Other")
                .addField(field("secret", 1, Type.TYPE_STRING).setOptions(tagged("PII"))).build();
        return FileDescriptorProto.newBuilder().setName("kafkatransit/customer.proto").setPackage("kafkatransit.test")
                .setSyntax("proto3").addDependency("confluent/meta.proto")
                .addMessageType(customer).addMessageType(other).build();
    }

    static Descriptor nested(String name) {
        return CUSTOMER.findNestedTypeByName(name);
    }

    static DynamicMessage address(String street, String city) {
        Descriptor d = nested("Address");
        return DynamicMessage.newBuilder(d).setField(d.findFieldByName("street"), street)
                .setField(d.findFieldByName("city"), city).build();
    }

    static DynamicMessage entry(String map, Object key, Object value) {
        Descriptor d = CUSTOMER.findFieldByName(map).getMessageType();
        return DynamicMessage.newBuilder(d).setField(d.findFieldByNumber(1), key).setField(d.findFieldByNumber(2), value)
                .build();
    }

    /** A customer; {@code seal} turns each tagged field's (path, plaintext) into what it holds. */
    static DynamicMessage customer(boolean email, boolean phone, Sealer seal) {
        Descriptor phoneType = nested("Phone");
        DynamicMessage.Builder c = DynamicMessage.newBuilder(CUSTOMER);
        c.setField(CUSTOMER.findFieldByName("id"), 7_000_000_004L);
        c.setField(CUSTOMER.findFieldByName("name"), seal.text("/name", "Ada Lovelace"));
        if (email) {
            c.setField(CUSTOMER.findFieldByName("email"), seal.text("/email", "ada@example.com"));
        }
        c.setField(CUSTOMER.findFieldByName("address"), address(seal.text("/address/street", "Main Street 1"), "Zürich"));
        for (int i = 0; i < 2; i++) {
            c.addRepeatedField(CUSTOMER.findFieldByName("phones"), DynamicMessage.newBuilder(phoneType)
                    .setField(phoneType.findFieldByName("kind"), i == 0 ? "mobile" : "home")
                    .setField(phoneType.findFieldByName("number"), seal.text("/phones/" + i + "/number", "+41 44 " + i))
                    .build());
        }
        c.setField(CUSTOMER.findFieldByName("notes"), "customer since 2001");
        c.setField(CUSTOMER.findFieldByName("loyalty"), -42);
        if (phone) {
            c.setField(CUSTOMER.findFieldByName("phone"), seal.text("/phone", "+44 20 0000"));
        } else {
            c.setField(CUSTOMER.findFieldByName("handle"), "@ada");
        }
        c.addRepeatedField(CUSTOMER.findFieldByName("attributes"), entry("attributes", "tier", seal.text("/attributes/tier", "gold")));
        c.addRepeatedField(CUSTOMER.findFieldByName("attributes"), entry("attributes", "x/y", seal.text("/attributes/x~1y", "web")));
        c.setField(CUSTOMER.findFieldByName("photo"), seal.bytes("/photo", new byte[] {(byte) 0x89, 'P', 'N', 'G'}));
        c.addRepeatedField(CUSTOMER.findFieldByName("aliases"), seal.text("/aliases/0", "Countess"));
        c.addRepeatedField(CUSTOMER.findFieldByName("aliases"), seal.text("/aliases/1", "Enchantress of Numbers"));
        c.addRepeatedField(CUSTOMER.findFieldByName("previous"), entry("previous", -5,
                address(seal.text("/previous/-5/street", "Old Street 9"), "London")));
        return c.build();
    }

    interface Sealer {
        String text(String path, String plaintext);

        default ByteString bytes(String path, byte[] plaintext) {
            return ByteString.copyFrom(plaintext);
        }
    }

    static final Sealer PLAIN = (path, plaintext) -> plaintext;

    Sealer sealer(boolean deterministic) {
        return new Sealer() {
            @Override
            public String text(String path, String plaintext) {
                return transit.encrypt("customers", plaintext.getBytes(StandardCharsets.UTF_8),
                        deterministic ? path.getBytes(StandardCharsets.UTF_8) : null, null);
            }

            @Override
            public ByteString bytes(String path, byte[] plaintext) {
                return ByteString.copyFromUtf8(transit.encrypt("customers", plaintext,
                        deterministic ? path.getBytes(StandardCharsets.UTF_8) : null, null));
            }
        };
    }

    static byte[] frame(int id, byte[] indexes, byte[] body) {
        return ByteBuffer.allocate(5 + indexes.length + body.length).put((byte) 0).putInt(id).put(indexes).put(body).array();
    }

    SchemaFieldsReader reader(RegisteredSchema schema, SchemaFieldsOptions options) {
        return new SchemaFieldsReader(SchemaFieldsTestSupport.source(11, schema), transit, options);
    }

    static RegisteredSchema text() {
        return new RegisteredSchema(RegisteredSchema.Type.PROTOBUF, TEXT);
    }

    static RegisteredSchema base64() {
        return new RegisteredSchema(RegisteredSchema.Type.PROTOBUF, Base64.getEncoder().encodeToString(PROTO.toByteArray()));
    }

    @Test
    void opensTaggedFieldsFromProtoText() {
        for (boolean phone : new boolean[] {true, false}) {
            DynamicMessage plain = customer(!phone, phone, PLAIN);
            DynamicMessage sealed = customer(!phone, phone, sealer(false));
            byte[] value = frame(11, new byte[] {0}, sealed.toByteArray());
            SchemaFieldsReader reader = reader(text(), SchemaFieldsOptions.tagged("customers"));
            OpenedRecord opened = reader.open(value);
            DynamicMessage got = (DynamicMessage) opened.value();
            assertEquals(plain.toByteString(), got.toByteString());
            assertEquals(List.of(), opened.messageIndexes());
            assertEquals(11, opened.fields());
            assertEquals(1, reader.vaultRequests());
            assertArrayEquals(frame(11, new byte[] {0}, plain.toByteArray()), opened.toWireFormat());
            assertEquals("Ada Lovelace", got.getField(got.getDescriptorForType().findFieldByName("name")));
        }
    }

    @Test
    void opensTaggedFieldsFromABase64Descriptor() {
        DynamicMessage plain = customer(true, true, PLAIN);
        byte[] value = frame(11, new byte[] {0}, customer(true, true, sealer(false)).toByteArray());
        OpenedRecord opened = reader(base64(), SchemaFieldsOptions.tagged("customers")).open(value);
        assertEquals(plain.toByteString(), ((DynamicMessage) opened.value()).toByteString());
    }

    @Test
    void deterministicContextsAreLocatedPaths() {
        DynamicMessage plain = customer(true, true, PLAIN);
        byte[] value = frame(11, new byte[] {0}, customer(true, true, sealer(true)).toByteArray());
        for (RegisteredSchema schema : List.of(text(), base64())) {
            OpenedRecord opened = reader(schema, SchemaFieldsOptions.tagged("customers").deterministic(true)).open(value);
            assertEquals(plain.toByteString(), ((DynamicMessage) opened.value()).toByteString());
            assertEquals(Reason.VAULT, assertThrows(SchemaFieldsException.class,
                    () -> reader(schema, SchemaFieldsOptions.tagged("customers")).open(value)).reason());
        }
    }

    @Test
    void messageIndexesPickTheMessage() {
        Descriptor other = FILE.findMessageTypeByName("Other");
        DynamicMessage sealed = DynamicMessage.newBuilder(other).setField(other.findFieldByName("secret"),
                transit.encrypt("customers", "s3cret".getBytes(StandardCharsets.UTF_8), null, null)).build();
        // Message indexes [1]: a count of 1 (zigzag 2), then index 1 (zigzag 2).
        byte[] value = frame(11, new byte[] {2, 2}, sealed.toByteArray());
        for (RegisteredSchema schema : List.of(text(), base64())) {
            OpenedRecord opened = reader(schema, SchemaFieldsOptions.tagged("customers")).open(value);
            assertEquals(List.of(1), opened.messageIndexes());
            DynamicMessage got = (DynamicMessage) opened.value();
            assertEquals("kafkatransit.test.Other", got.getDescriptorForType().getFullName());
            assertEquals("s3cret", got.getField(got.getDescriptorForType().findFieldByName("secret")));
            assertArrayEquals(frame(11, new byte[] {2, 2}, DynamicMessage.newBuilder(other)
                    .setField(other.findFieldByName("secret"), "s3cret").build().toByteArray()), opened.toWireFormat());
        }
        // [0, 2]: in the text, Customer declares two messages; the descriptor counts its map entries too.
        DynamicMessage entry = entry("attributes", "k", "v");
        byte[] third = frame(11, new byte[] {4, 0, 4}, entry.toByteArray());
        assertEquals(Reason.DECODE, assertThrows(SchemaFieldsException.class,
                () -> reader(text(), SchemaFieldsOptions.tagged("customers")).open(third)).reason());
        assertEquals("kafkatransit.test.Customer.AttributesEntry", ((DynamicMessage) reader(base64(),
                SchemaFieldsOptions.tagged("customers")).open(third).value()).getDescriptorForType().getFullName());
    }

    @Test
    void fieldPathsSelectTooAndATagOnANonStringFieldIsASchemaError() {
        DynamicMessage plain = customer(true, false, PLAIN);
        DynamicMessage.Builder sealed = plain.toBuilder();
        sealed.setField(CUSTOMER.findFieldByName("notes"), transit.encrypt("customers",
                "customer since 2001".getBytes(StandardCharsets.UTF_8), null, null));
        byte[] value = frame(11, new byte[] {0}, sealed.build().toByteArray());
        OpenedRecord opened = reader(text(), new SchemaFieldsOptions("customers", List.of(), List.of("/notes"), false,
                null, false)).open(value);
        assertEquals(plain.toByteString(), ((DynamicMessage) opened.value()).toByteString());
        String tagsInt = TEXT.replace("int32 loyalty = 7;", "int32 loyalty = 7 [(confluent.field_meta).tags = \"PII\"];");
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class, () -> reader(new RegisteredSchema(
                RegisteredSchema.Type.PROTOBUF, tagsInt), SchemaFieldsOptions.tagged("customers")).open(value));
        assertEquals(Reason.SCHEMA, e.reason());
        assertTrue(e.getMessage().contains("kafkatransit.test.Customer.loyalty"), e.getMessage());
        assertTrue(e.getMessage().contains("only string and bytes fields can be protected"), e.getMessage());
        // A path onto a message field is refused too.
        assertEquals(Reason.SCHEMA, assertThrows(SchemaFieldsException.class, () -> reader(text(),
                new SchemaFieldsOptions("customers", List.of(), List.of("/address"), false, null, false))
                .open(value)).reason());
    }

    @Test
    void aPlaintextLeftInATaggedFieldOrBadBytesAreRefused() {
        byte[] plain = frame(11, new byte[] {0}, customer(true, true, PLAIN).toByteArray());
        assertEquals(Reason.NOT_CIPHERTEXT, assertThrows(SchemaFieldsException.class,
                () -> reader(text(), SchemaFieldsOptions.tagged("customers")).open(plain)).reason());
        byte[] sealed = frame(11, new byte[] {0}, customer(true, true, sealer(false)).toByteArray());
        byte[] truncated = java.util.Arrays.copyOf(sealed, sealed.length - 2);
        assertEquals(Reason.DECODE, assertThrows(SchemaFieldsException.class,
                () -> reader(text(), SchemaFieldsOptions.tagged("customers")).open(truncated)).reason());
        assertEquals(Reason.DECODE, assertThrows(SchemaFieldsException.class,
                () -> reader(text(), SchemaFieldsOptions.tagged("customers")).open(new byte[] {0, 0, 0, 0, 11, (byte) 0x80}))
                .reason());
    }

    @Test
    void proto2GroupsAndReferencedFiles() {
        String common = """
                syntax = "proto2";
                package common;
                message Contact {
                  optional string mail = 1 [(confluent.field_meta).tags = "PII"];
                  optional group Extra = 2 {
                    optional string note = 3 [(confluent.field_meta).tags = "PII"];
                  }
                }
                """;
        String main = """
                syntax = "proto3";
                package app;
                import "common/contact.proto";
                import "google/protobuf/timestamp.proto";
                message Order {
                  common.Contact contact = 1;
                  google.protobuf.Timestamp at = 2;
                }
                """;
        RegisteredSchema schema = new RegisteredSchema(RegisteredSchema.Type.PROTOBUF, main,
                List.of(new RegisteredSchema.Reference("common/contact.proto", common)));
        // The record's bytes by hand: Order{contact{mail, Extra{note}}, at{seconds: 5}}.
        String mail = transit.encrypt("k", "a@b.c".getBytes(StandardCharsets.UTF_8), null, null);
        String note = transit.encrypt("k", "note".getBytes(StandardCharsets.UTF_8), null, null);
        com.google.protobuf.ByteString.Output contact = com.google.protobuf.ByteString.newOutput();
        try {
            var out = com.google.protobuf.CodedOutputStream.newInstance(contact);
            out.writeString(1, mail);
            out.writeTag(2, 3);
            out.writeString(3, note);
            out.writeTag(2, 4);
            out.flush();
            var body = com.google.protobuf.ByteString.newOutput();
            var order = com.google.protobuf.CodedOutputStream.newInstance(body);
            order.writeBytes(1, contact.toByteString());
            order.writeBytes(2, com.google.protobuf.Timestamp.newBuilder().setSeconds(5).build().toByteString());
            order.flush();
            OpenedRecord opened = new SchemaFieldsReader(SchemaFieldsTestSupport.source(12, schema), transit,
                    SchemaFieldsOptions.tagged("k")).open(frame(12, new byte[] {0}, body.toByteString().toByteArray()));
            assertEquals(2, opened.fields());
            String text = opened.value().toString();
            assertTrue(text.contains("mail: \"a@b.c\""), text);
            assertTrue(text.contains("note: \"note\""), text);
            assertTrue(text.contains("seconds: 5"), text);
        } catch (java.io.IOException e) {
            throw new IllegalStateException(e);
        }
    }
}
