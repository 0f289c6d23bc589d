module github.com/kafka-transit/kafka-transit/clients/go

go 1.22

require (
	github.com/klauspost/compress v1.17.11
	github.com/pierrec/lz4/v4 v4.1.22
)
