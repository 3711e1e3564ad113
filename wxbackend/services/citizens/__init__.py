"""citizens"""
