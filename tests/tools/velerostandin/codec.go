package main

// Debian's gRPC 1.33 marshals with golang/protobuf 1.3, which cannot handle messages generated
// by today's protoc-gen-go (the protobuf API v2). Velero is built with matching versions and
// needs nothing like this. This codec replaces gRPC's "proto" codec for the whole process: API v2
// messages (our generated stubs) through google.golang.org/protobuf, older ones (go-plugin
// 1.0.1's broker and controller messages) through golang/protobuf. The bytes on the wire are
// protobuf either way.

import (
	"fmt"

	protov1 "github.com/golang/protobuf/proto"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

type bothAPIsCodec struct{}

func (bothAPIsCodec) Name() string { return "proto" }

func (bothAPIsCodec) Marshal(v interface{}) ([]byte, error) {
	switch m := v.(type) {
	case protoreflect.ProtoMessage:
		return proto.Marshal(m)
	case protov1.Message:
		return protov1.Marshal(m)
	}
	return nil, fmt.Errorf("codec: %T is not a protobuf message", v)
}

func (bothAPIsCodec) Unmarshal(data []byte, v interface{}) error {
	switch m := v.(type) {
	case protoreflect.ProtoMessage:
		return proto.Unmarshal(data, m)
	case protov1.Message:
		return protov1.Unmarshal(data, m)
	}
	return fmt.Errorf("codec: %T is not a protobuf message", v)
}

func init() { encoding.RegisterCodec(bothAPIsCodec{}) }
