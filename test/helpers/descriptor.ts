import type protobuf from "protobufjs";
import descriptor from "protobufjs/ext/descriptor/index.js";

/** protobufjs's own descriptor.proto types, to decode what reflection returns independently of the service. */
export const FileDescriptorProto = (descriptor as unknown as { FileDescriptorProto: protobuf.Type })
  .FileDescriptorProto;
