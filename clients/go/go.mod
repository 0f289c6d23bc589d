module github.com/kafka-transit/kafka-transit/clients/go

go 1.22

require (
	github.com/bufbuild/protocompile v0.14.1
	github.com/hamba/avro/v2 v2.20.0
	github.com/klauspost/compress v1.17.11
	github.com/pierrec/lz4/v4 v4.1.22
	google.golang.org/protobuf v1.36.6
)

require (
	github.com/json-iterator/go v1.1.12 // indirect
	github.com/mitchellh/mapstructure v1.5.0 // indirect
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.2 // indirect
	golang.org/x/sync v0.8.0 // indirect
)
