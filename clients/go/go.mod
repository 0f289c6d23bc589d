module github.com/kafka-transit/kafka-transit/clients/go

go 1.22
