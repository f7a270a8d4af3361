require "include";
include :personal "ping";
