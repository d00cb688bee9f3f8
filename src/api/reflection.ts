import { create, toBinary, type DescEnum, type DescFile, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type ServerReflection as ReflectionV1,
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
} from "../gen/grpc/reflection/v1/reflection_pb.js";
import {
  type ServerReflection as ReflectionV1Alpha,
  ServerReflectionResponseSchema as ResponseV1AlphaSchema,
} from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** Index of the files we serve: by file name and by every fully qualified symbol they define. */
class DescriptorIndex {
  readonly byName = new Map<string, DescFile>();
  readonly bySymbol = new Map<string, DescFile>();

  constructor(files: DescFile[]) {
    for (const f of files) this.addFile(f);
  }

  private addFile(f: DescFile): void {
    if (this.byName.has(f.proto.name)) return;
    this.byName.set(f.proto.name, f);
    for (const dep of f.dependencies) this.addFile(dep);
    const addMessage = (m: DescMessage): void => {
      this.bySymbol.set(m.typeName, f);
      for (const n of m.nestedMessages) addMessage(n);
      for (const e of m.nestedEnums) this.bySymbol.set(e.typeName, f);
    };
    for (const m of f.messages) addMessage(m);
    for (const e of f.enums as DescEnum[]) this.bySymbol.set(e.typeName, f);
    for (const s of f.services as DescService[]) {
      this.bySymbol.set(s.typeName, f);
      for (const m of s.methods) this.bySymbol.set(`${s.typeName}.${m.name}`, f);
    }
  }

  /** The file and everything it imports, as serialized FileDescriptorProtos, the file first. */
  closure(f: DescFile): Uint8Array[] {
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const visit = (file: DescFile): void => {
      if (seen.has(file.proto.name)) return;
      seen.add(file.proto.name);
      out.push(toBinary(FileDescriptorProtoSchema, file.proto));
      for (const d of file.dependencies) visit(d);
    };
    visit(f);
    return out;
  }
}

const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

/**
 * gRPC server reflection (v1 and the v1alpha that older grpcurl asks for), so
 * that operators can list and describe the API with no .proto files at hand.
 */
export function reflectionServices(services: DescService[]): {
  v1: ServiceImpl<typeof ReflectionV1>;
  v1alpha: ServiceImpl<typeof ReflectionV1Alpha>;
} {
  const index = new DescriptorIndex(services.map((s) => s.file));
  const serviceNames = services.map((s) => s.typeName);

  function answer(req: ServerReflectionRequest) {
    const base = { validHost: req.host, originalRequest: { ...req, $typeName: undefined } };
    const files = (f: DescFile | undefined, what: string) =>
      f
        ? create(ServerReflectionResponseSchema, {
            ...base,
            messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: index.closure(f) } },
          })
        : create(ServerReflectionResponseSchema, {
            ...base,
            messageResponse: {
              case: "errorResponse",
              value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` },
            },
          });
    switch (req.messageRequest.case) {
      case "listServices":
        return create(ServerReflectionResponseSchema, {
          ...base,
          messageResponse: { case: "listServicesResponse", value: { service: serviceNames.map((name) => ({ name })) } },
        });
      case "fileByFilename":
        return files(index.byName.get(req.messageRequest.value), `file ${req.messageRequest.value}`);
      case "fileContainingSymbol":
        return files(index.bySymbol.get(req.messageRequest.value), `symbol ${req.messageRequest.value}`);
      case "allExtensionNumbersOfType":
        // Our API declares no extensions.
        return create(ServerReflectionResponseSchema, {
          ...base,
          messageResponse: {
            case: "allExtensionNumbersResponse",
            value: { baseTypeName: req.messageRequest.value, extensionNumber: [] },
          },
        });
      default:
        return create(ServerReflectionResponseSchema, {
          ...base,
          messageResponse: {
            case: "errorResponse",
            value: { errorCode: UNIMPLEMENTED, errorMessage: "request kind not supported" },
          },
        });
    }
  }

  return {
    v1: {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) yield answer(req);
      },
    },
    // The two versions have the same messages field for field; only their package differs.
    v1alpha: {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) {
          const res = answer(req as unknown as ServerReflectionRequest);
          yield create(ResponseV1AlphaSchema, { ...res, $typeName: undefined } as never);
        }
      },
    },
  };
}
