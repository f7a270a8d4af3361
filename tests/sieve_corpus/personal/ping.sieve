require "include";
include :personal "pong";
