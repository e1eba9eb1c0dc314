"""TEST DOUBLE of pachd's `pps_v2.API` gRPC service: CreatePipelineV2 and InspectPipeline only.

No Pachyderm cluster can run on the test machines. This small in-process server speaks
the real wire protocol with pachyderm-sdk's own message classes, so the API backend is
exercised through a real gRPC channel, real serialisation and real metadata. It keeps
pipelines in memory, bumping the version on every update the way pachd does, and records
each request (the spec JSON and the flags) and the auth token it carried.
"""

from __future__ import annotations

import json
import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import grpc
from pachyderm_sdk.api import pfs, pps


@dataclass
class Received:
    spec_json: str
    update: bool
    reprocess: bool
    token: Optional[str]


@dataclass
class PpsDouble:
    pipelines: Dict[str, Tuple[int, dict]] = field(default_factory=dict)
    received: List[Received] = field(default_factory=list)
    tokens: List[Optional[str]] = field(default_factory=list)
    fail: Optional[str] = None  # a method name that answers UNAVAILABLE
    hang: Optional[str] = None  # a method name that never answers in time
    image_override: Optional[str] = None  # the image the "cluster" keeps instead
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)  # ends a hang early

    def _fault(self, method: str, context: grpc.ServicerContext) -> None:
        self.tokens.append(dict(context.invocation_metadata()).get("authn-token"))
        if self.hang == method:
            self.released.wait(30)
        if self.fail == method:
            context.abort(grpc.StatusCode.UNAVAILABLE, "pachd is restarting")

    def create_pipeline_v2(
        self, request: pps.CreatePipelineV2Request, context: grpc.ServicerContext
    ) -> pps.CreatePipelineV2Response:
        self._fault("CreatePipelineV2", context)
        token = dict(context.invocation_metadata()).get("authn-token")
        try:
            spec = json.loads(request.create_pipeline_request_json)
            name = spec["pipeline"]["name"]
        except (ValueError, KeyError, TypeError):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no pipeline `name` specified")
        with self.lock:
            self.received.append(
                Received(request.create_pipeline_request_json, request.update, request.reprocess, token)
            )
            if name in self.pipelines and not request.update:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"pipeline {name} already exists")
            if self.image_override:
                spec.setdefault("transform", {})["image"] = self.image_override
            version = self.pipelines.get(name, (0, {}))[0] + 1
            self.pipelines[name] = (version, spec)
        return pps.CreatePipelineV2Response(effective_create_pipeline_request_json=json.dumps(spec))

    def inspect_pipeline(self, request: pps.InspectPipelineRequest, context: grpc.ServicerContext) -> pps.PipelineInfo:
        self._fault("InspectPipeline", context)
        name = request.pipeline.name
        project = request.pipeline.project.name if request.pipeline.project else ""
        with self.lock:
            found = self.pipelines.get(name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"pipeline {project or 'default'}/{name} not found")
        version, spec = found
        details = pps.PipelineInfoDetails(
            transform=pps.Transform().from_dict(spec.get("transform", {})),
            metadata=pps.Metadata().from_dict(spec.get("metadata", {})),
        )
        return pps.PipelineInfo(
            pipeline=pps.Pipeline(name=name, project=pfs.Project(name=project or "default")),
            version=version,
            details=details if request.details else None,
            user_spec_json=json.dumps(spec),
        )


def start(double: Optional[PpsDouble] = None) -> Tuple[grpc.Server, int, PpsDouble]:
    """Serve a PpsDouble on a free loopback port; returns the server, the port and the double."""
    double = double or PpsDouble()
    handlers = {
        "CreatePipelineV2": grpc.unary_unary_rpc_method_handler(
            double.create_pipeline_v2,
            request_deserializer=pps.CreatePipelineV2Request.FromString,
            response_serializer=bytes,
        ),
        "InspectPipeline": grpc.unary_unary_rpc_method_handler(
            double.inspect_pipeline,
            request_deserializer=pps.InspectPipelineRequest.FromString,
            response_serializer=bytes,
        ),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("pps_v2.API", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, double
